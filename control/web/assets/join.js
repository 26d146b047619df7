// The join page (/m/ID): the lobby (title, state, the recording notice), the join form (a
// password, or a registration's join token, and the registration form when the meeting takes
// registrations), then the meeting played over WHEP with a sound level meter and the
// connection's health, and for panelists and hosts a WHIP publisher of camera and microphone.
// The session's event stream says when its participant was expelled or the meeting ended.
"use strict";

const id = relay.meetingId();
const base = `/v1/meetings/${encodeURIComponent(id)}`;
const LABELS = {first_name: "First name", last_name: "Last name", email: "Email",
  job_title: "Job title", company: "Company", city: "City", country: "Country"};
const AUTOCOMPLETE = {first_name: "given-name", last_name: "family-name", email: "email",
  job_title: "organization-title", company: "organization", city: "address-level2",
  country: "country-name"};

// Receiving sections the page offers: the relay fills one per presenter (panelists and hosts
// who send), in the order they joined; the others stay inactive.
const PRESENTERS = {audio: 4, video: 4};

let viewing = null;   // {pc, location, events, follower, timer, audioContext}
let presenting = null;
let registration = null;  // the registration made in this tab: {id}

function notice(text, kind = "error") { relay.say("notice", text, kind); }

async function showLobby() {
  let lobby;
  try {
    lobby = await relay.call("GET", `${base}/lobby`);
  } catch (error) {
    notice(relay.explain(error));
    return;
  }
  document.getElementById("title").textContent = lobby.title;
  document.title = `${lobby.title} · relay`;
  document.getElementById("kind").textContent = lobby.mode === "webinar" ? "Webinar" : "Meeting";
  relay.show("recording", lobby.recording);
  if (lobby.state === "ended") {
    notice("This meeting has ended.");
    return;
  }
  if (lobby.locked) notice("This meeting is locked: nobody new may join.", "warning");
  relay.show("join", true);
  relay.show("publish", true);
  if (lobby.registration) {
    document.getElementById("secret-label").textContent = "Join token";
    await showRegistration();
  }
}

// -- registering --

async function showRegistration() {
  let form;
  try {
    form = await relay.call("GET", `${base}/registration`);
  } catch (error) {
    return;  // registration closed meanwhile: the token field stays
  }
  const node = document.getElementById("register-form");
  node.replaceChildren();
  const field = (name, label, required, maxLength) => {
    const input = relay.el("input", {id: `r-${name}`, name, maxlength: maxLength,
      required, autocomplete: AUTOCOMPLETE[name] || "off",
      type: name === "email" ? "email" : "text"});
    node.append(relay.el("label", {for: `r-${name}`}, label + (required ? "" : " (optional)")), input);
  };
  for (const f of form.fields) field(f.id, LABELS[f.id] || f.id, f.required, f.max_length);
  for (const q of form.questions) field(`q-${q.id}`, q.label, q.required, q.max_length);
  node.append(relay.el("button", {type: "submit", id: "register-button"}, "Register"));
  if (form.full) relay.say("register-notice", "Every place is taken: registration is full.", "warning");
  relay.show("register", true);
}

document.getElementById("register-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = {answers: {}};
  for (const input of event.target.querySelectorAll("input")) {
    if (!input.value.trim()) continue;
    if (input.name.startsWith("q-")) body.answers[input.name.slice(2)] = input.value.trim();
    else body[input.name] = input.value.trim();
  }
  if (!Object.keys(body.answers).length) delete body.answers;
  try {
    const made = await relay.call("POST", `${base}/registrations`, {body});
    registration = made;
    event.target.hidden = true;
    registered(made);
  } catch (error) {
    relay.say("register-notice", relay.explain(error), "error");
  }
});

function registered(made) {
  if (made.join_token) {
    relay.say("register-notice", "You are registered and approved: your join token is in the " +
      "field above. Keep it: it is shown this once.", "ok");
    document.getElementById("secret").value = made.join_token;
  } else if (made.status === "unconfirmed") {
    relay.say("register-notice", "We emailed you a code: enter it to confirm your address.", "info");
    relay.show("confirm-form", true);
  } else if (made.status === "pending") {
    relay.say("register-notice", "You are registered. The host approves registrations: " +
      "you will receive your join token once approved.", "info");
  } else if (made.status === "rejected") {
    relay.say("register-notice", "Your registration was declined.", "error");
  }
}

document.getElementById("confirm-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const code = document.getElementById("code").value.trim();
  try {
    const made = await relay.call(
      "POST", `${base}/registrations/${encodeURIComponent(registration.id)}/confirm`,
      {body: {code}});
    event.target.hidden = true;
    registered(made);
  } catch (error) {
    relay.say("register-notice", relay.explain(error), "error");
  }
});

// While the meeting is under attack a password join must carry a proof of work: the page
// says what it is doing while its worker solves it.
function proving(found, needed) {
  notice(`This meeting is seeing many wrong passwords, so joining takes a little work from ` +
    `your browser: ${Math.round(100 * found / needed)} % done…`, "info");
}

// -- playing --

const level = document.getElementById("level");
let analyser = null;
let reported = null;  // the last {energy, duration} the browser's statistics gave

function show(rms, source) {
  // The meter shows the level; data-level keeps the peak of the last second (for screen
  // readers and tests) and data-source says where the level came from.
  const now = performance.now();
  level.value = Math.min(1, rms * 4);
  const peak = Number(level.dataset.level || 0);
  if (rms >= peak || now - Number(level.dataset.peakAt || 0) > 1000) {
    level.dataset.level = rms.toFixed(4);
    level.dataset.peakAt = now;
  }
  level.dataset.source = source;
}

function meter(tracks, context) {
  // The sound level of what plays: the RMS of a WebAudio analyser's samples. `context` was
  // made in the Join press itself: browsers let audio start from a user's gesture, and the
  // handshake in between can outlast what counts as one. Where it cannot run at all (no
  // audio output device), health() shows the level the browser reports receiving instead.
  const mine = analyser = context.createAnalyser();
  analyser.fftSize = 1024;
  // Every presenter's audio into one analyser: WebAudio mixes what is connected to a node.
  for (const track of tracks) {
    context.createMediaStreamSource(new MediaStream([track])).connect(analyser);
  }
  const samples = new Float32Array(analyser.fftSize);
  const state = () => { level.dataset.context = context.state; };
  context.addEventListener("statechange", state);
  state();
  if (context.state === "suspended") context.resume().catch(() => {});
  const tick = () => {
    if (analyser !== mine) return;  // stopped, or replaced by a new session's
    if (context.state === "running") {
      mine.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const x of samples) sum += x * x;
      show(Math.sqrt(sum / samples.length), "analyser");
    }
    requestAnimationFrame(tick);
  };
  tick();
  return context;
}

async function health() {
  if (!viewing) return;
  const figures = {state: viewing.pc.connectionState, packets: 0, lost: 0, jitter: null,
    rtt: null, frames: 0, energy: null, duration: null};
  (await viewing.pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp") {
      figures.packets += s.packetsReceived || 0;
      figures.lost += Math.max(0, s.packetsLost || 0);
      if (s.kind === "audio" && s.jitter !== undefined) figures.jitter = s.jitter;
      if (s.kind === "audio" && s.totalAudioEnergy !== undefined) {
        figures.energy = s.totalAudioEnergy;
        figures.duration = s.totalSamplesDuration;
      }
      if (s.kind === "video") figures.frames += s.framesDecoded || 0;
    }
    if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime !== undefined) {
      figures.rtt = s.currentRoundTripTime;
    }
  });
  if (figures.energy !== null && viewing.audioContext.state !== "running") {
    // The RMS of the last second from the browser's own totals (W3C webrtc-stats:
    // totalAudioEnergy is the sum of squared levels times each sample's duration).
    if (reported && figures.duration > reported.duration) {
      const energy = (figures.energy - reported.energy) / (figures.duration - reported.duration);
      show(Math.sqrt(Math.max(0, energy)), "statistics");
    }
    reported = {energy: figures.energy, duration: figures.duration};
  }
  const total = figures.packets + figures.lost;
  const rows = [
    ["Connection", figures.state],
    ["Packets received", relay.number(figures.packets)],
    ["Lost", total ? `${(100 * figures.lost / total).toFixed(1)} %` : "0 %"],
    ["Jitter", figures.jitter === null ? "–" : `${(figures.jitter * 1000).toFixed(0)} ms`],
    ["Round trip", figures.rtt === null ? "–" : `${(figures.rtt * 1000).toFixed(0)} ms`],
    ["Video frames", relay.number(figures.frames)],
  ];
  const list = document.getElementById("health");
  list.replaceChildren(...rows.flatMap(([k, v]) => [relay.el("dt", {}, k), relay.el("dd", {}, v)]));
  list.dataset.state = figures.state;
  list.dataset.packets = figures.packets;
}

function play(tracks) {
  // One element per track: an <audio> element plays only the first audio track of a stream.
  // A video tile shows once its track has media (a section the relay left inactive never does).
  const stage = document.getElementById("stage");
  const sounds = document.getElementById("sounds");
  stage.replaceChildren();
  sounds.replaceChildren();
  for (const track of tracks) {
    const element = relay.el(track.kind, {autoplay: true, playsinline: true,
      "aria-label": track.kind === "video" ? "A presenter's video" : null});
    element.srcObject = new MediaStream([track]);
    if (track.kind === "video") {
      element.muted = true;
      element.hidden = track.muted;
      track.addEventListener("unmute", () => { element.hidden = false; });
      track.addEventListener("mute", () => { element.hidden = true; });
      stage.append(element);
    } else {
      sounds.append(element);
      element.play().catch(() => relay.show("unmute", true));
    }
  }
}

function follow(session, onGone, onStreams) {
  // The session's own events: expelled, meeting ended, left; the recording notice; and, for a
  // viewer, the streams the meeting's presenters send now.
  if (!session.events) return null;
  return relay.stream(session.events, null, {
    state: (s) => {
      relay.show("recording", s.recording);
      if (onStreams && s.state === "present") onStreams(s.streams);
      if (s.state === "expelled") onGone("You were removed from this meeting by the host.");
      else if (s.state === "ended") onGone("This meeting has ended.");
      else if (s.state === "left") onGone("You have left the meeting.");
    },
    error: () => {},
  });
}

// A presenter who started after this viewer joined is not in its answer (the relay answers
// once, it does not renegotiate): the page joins again, and once the new session plays, the
// old one leaves. At most once every 5 s, and only while a section of that kind is free.
let refreshing = false;
let refreshedAt = 0;

function presenters(streams) {
  if (!viewing) return;
  relay.say("waiting", streams.length ? "" :
    "Nobody is presenting yet: this page plays as soon as someone does.", "info");
  const {ssrcs, kinds} = viewing.placed;
  const missing = streams.some((s) => !ssrcs.has(s.ssrc) &&
    (kinds[s.kind] || 0) < (PRESENTERS[s.kind] || 0));
  if (!missing || refreshing) return;
  refreshing = true;
  const wait = Math.max(300, refreshedAt + 5000 - Date.now());
  setTimeout(() => refresh().finally(() => { refreshing = false; refreshedAt = Date.now(); }), wait);
}

async function refresh() {
  const old = viewing;
  if (!old) return;
  const tracks = [];
  let fresh;
  try {
    fresh = await relay.connectWithProof({
      path: `${base}/whep?name=${encodeURIComponent(old.name)}`,
      credential: old.credential,
      sections: PRESENTERS,
      onTrack: (e) => tracks.push(e.track),
    });
  } catch (_) {
    return;  // the old session plays on
  }
  if (viewing !== old) {  // left or expelled meanwhile
    fresh.pc.close();
    relay.call("DELETE", fresh.location).catch(() => {});
    return;
  }
  if (old.follower) old.follower.stop();
  old.pc.close();
  relay.call("DELETE", old.location).catch(() => {});
  Object.assign(fresh, {audioContext: old.audioContext, timer: old.timer,
    credential: old.credential, name: old.name});
  viewing = fresh;
  play(tracks);
  meter(tracks.filter((t) => t.kind === "audio"), fresh.audioContext);
  fresh.follower = follow(fresh, (message) => stopViewing(message), presenters);
  fresh.pc.addEventListener("connectionstatechange", () => {
    if (viewing === fresh && fresh.pc.connectionState === "failed") {
      stopViewing("The connection to the relay failed. Join again.");
    }
  });
}

function stopViewing(message, kind = "error") {
  if (!viewing) return;
  const session = viewing;
  viewing = null;
  analyser = null;
  reported = null;
  if (session.follower) session.follower.stop();
  if (session.audioContext) session.audioContext.close().catch(() => {});
  clearInterval(session.timer);
  session.pc.close();
  relay.show("player", false);
  relay.show("join", !message || kind !== "error");
  notice(message, kind);
}

document.getElementById("join-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = document.getElementById("join-button");
  const name = document.getElementById("name").value.trim();
  const secret = document.getElementById("secret").value;
  button.disabled = true;
  notice("Joining…", "info");
  const audioContext = new AudioContext();
  const tracks = [];
  try {
    viewing = await relay.connectWithProof({
      path: `${base}/whep?name=${encodeURIComponent(name)}`,
      credential: secret,
      sections: PRESENTERS,
      onTrack: (e) => tracks.push(e.track),
    }, proving);
  } catch (error) {
    viewing = null;
    audioContext.close().catch(() => {});
    notice(relay.explain(error));
    button.disabled = false;
    return;
  }
  button.disabled = false;
  notice("");
  relay.show("join", false);
  relay.show("register", false);
  relay.show("player", true);
  play(tracks);
  viewing.audioContext = meter(tracks.filter((t) => t.kind === "audio"), audioContext);
  viewing.timer = setInterval(health, 1000);
  viewing.credential = secret;
  viewing.name = name;
  viewing.follower = follow(viewing, (message) => stopViewing(message), presenters);
  const first = viewing;
  first.pc.addEventListener("connectionstatechange", () => {
    if (viewing === first && first.pc.connectionState === "failed") {
      stopViewing("The connection to the relay failed. Join again.");
    }
  });
});

document.getElementById("unmute").addEventListener("click", () => {
  for (const audio of document.querySelectorAll("#sounds audio")) audio.play().catch(() => {});
  if (viewing && viewing.audioContext) viewing.audioContext.resume().catch(() => {});
  relay.show("unmute", false);
});

document.getElementById("leave").addEventListener("click", async () => {
  const location = viewing && viewing.location;
  stopViewing("You have left the meeting.", "info");
  if (location) await relay.call("DELETE", location).catch(() => {});
});

// -- presenting --

document.getElementById("publish-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const secret = document.getElementById("publish-secret").value;
  const name = document.getElementById("name").value.trim() || "Presenter";
  const button = document.getElementById("publish-button");
  button.disabled = true;
  relay.say("publish-notice", "Starting…", "info");
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({audio: true, video: true});
  } catch (error) {
    relay.say("publish-notice", `No camera or microphone: ${error.message}`, "error");
    button.disabled = false;
    return;
  }
  try {
    presenting = await relay.connectWithProof({
      path: `${base}/whip?name=${encodeURIComponent(name)}`, credential: secret, stream},
    proving);
  } catch (error) {
    stream.getTracks().forEach((t) => t.stop());
    relay.say("publish-notice", relay.explain(error), "error");
    button.disabled = false;
    return;
  }
  presenting.stream = stream;
  const preview = document.getElementById("preview");
  preview.srcObject = stream;
  preview.hidden = false;
  event.target.hidden = true;
  relay.show("publish-stop", true);
  relay.say("publish-notice", "You are presenting.", "ok");
  presenting.follower = follow(presenting, (message) => stopPresenting(message));
});

function stopPresenting(message) {
  if (!presenting) return;
  const session = presenting;
  presenting = null;
  if (session.follower) session.follower.stop();
  session.stream.getTracks().forEach((t) => t.stop());
  session.pc.close();
  document.getElementById("preview").hidden = true;
  document.getElementById("publish-form").hidden = false;
  document.getElementById("publish-button").disabled = false;
  relay.show("publish-stop", false);
  relay.say("publish-notice", message, "info");
}

document.getElementById("publish-stop").addEventListener("click", async () => {
  const location = presenting && presenting.location;
  stopPresenting("You stopped presenting.");
  if (location) await relay.call("DELETE", location).catch(() => {});
});

window.addEventListener("pagehide", () => {
  // Leave as a DELETE would; the relay also notices a peer that is gone (its DTLS closes).
  for (const session of [viewing, presenting]) {
    if (session && session.location) {
      fetch(session.location, {method: "DELETE", keepalive: true, credentials: "omit"});
    }
  }
});

showLobby();
