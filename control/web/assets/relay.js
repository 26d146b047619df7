// What every page of the web console shares (control/web/pages.py): calls of the public API
// with the credential in the Authorization header, event streams read with fetch() (EventSource
// cannot send that header), the WHIP and WHEP handshake, and building the page's elements with
// textContent only (nothing the server or a participant sends is ever parsed as HTML).
"use strict";

const relay = {};

// An API refusal: the status, the API's error code and message, and Retry-After when given.
relay.ApiError = class extends Error {
  constructor(status, code, message, retryAfter, detail = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
    this.detail = detail;  // the whole error object (a 428 carries its challenge in it)
  }
};

async function refusal(response) {
  let code = "error";
  let message = `the server answered ${response.status}`;
  let detail = {};
  try {
    const body = await response.json();
    if (body && body.error) ({code, message} = detail = body.error);
  } catch (_) { /* not JSON: keep the status */ }
  const retry = Number(response.headers.get("Retry-After") || 0);
  return new relay.ApiError(response.status, code, message, retry, detail);
}

// fetch() of an API path; `body` is sent as JSON; answers the parsed JSON (null for 204),
// the text for text answers, or throws relay.ApiError.
relay.call = async (method, path, {token, body, accept} = {}) => {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (accept) headers.Accept = accept;
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store", credentials: "omit",
    });
  } catch (_) {
    throw new relay.ApiError(0, "network", "the relay cannot be reached", 0);
  }
  if (!response.ok) throw await refusal(response);
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  return type.startsWith("application/json") ? response.json() : response.text();
};

// A file the API answers (a CSV export), offered as a download.
relay.download = async (path, token, filename) => {
  const text = await relay.call("GET", path, {token});
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([text], {type: "text/csv"}));
  link.download = filename;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
};

// Server-sent events of `path` (control/api/live.py): handlers[event](data) for each event;
// `token` null for a WebRTC session's stream, whose URL is its credential.
// Reconnects after the server's `retry` delay when the connection drops; stops for good on
// `end`, on an `error` event (handlers.error gets it), on a 4xx, or when `stop()` is called.
relay.stream = (path, token, handlers) => {
  const control = new AbortController();
  let retry = 2000;
  let stopped = false;
  const stop = () => { stopped = true; control.abort(); };
  const dispatch = (block) => {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      else if (line.startsWith("retry:")) retry = Number(line.slice(6)) || retry;
    }
    if (!data.length) return;
    const value = JSON.parse(data.join("\n"));
    if (event === "end" || event === "error") stopped = true;
    if (handlers[event]) handlers[event](value);
  };
  (async () => {
    while (!stopped) {
      try {
        const headers = {Accept: "text/event-stream"};
        if (token) headers.Authorization = `Bearer ${token}`;
        const response = await fetch(path, {
          headers,
          signal: control.signal, cache: "no-store", credentials: "omit",
        });
        if (!response.ok) {
          const error = await refusal(response);
          if (response.status < 500) {
            stopped = true;
            if (handlers.error) handlers.error({code: error.code, message: error.message});
            return;
          }
        } else {
          if (handlers.open) handlers.open();
          const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
          let pending = "";
          for (;;) {
            const {value, done} = await reader.read();
            if (done) break;
            pending += value.replace(/\r\n?/g, "\n");
            let cut;
            while ((cut = pending.indexOf("\n\n")) >= 0) {
              dispatch(pending.slice(0, cut));
              pending = pending.slice(cut + 2);
            }
          }
        }
      } catch (_) {
        if (stopped) return;
      }
      if (stopped) return;
      if (handlers.lost) handlers.lost();
      await new Promise((r) => setTimeout(r, retry));
    }
  })();
  return {stop};
};

// The WebRTC side: an offer with its candidates (the relay takes no trickle: it is ICE-lite),
// POSTed to a WHIP or WHEP path, the answer applied. Returns {pc, location, events}: the
// session's URL and its event stream's (the answer's Link header). A viewer offers
// `sections` receiving sections of each kind (default one audio, one video): the relay places
// one presenter's stream in each, in the order they joined, and answers the rest inactive,
// so a panel of presenters is heard together.
relay.connect = async ({path, credential, stream, onTrack, sections = {audio: 1, video: 1},
  proof}) => {
  const pc = new RTCPeerConnection();
  if (stream) {
    for (const track of stream.getTracks()) pc.addTransceiver(track, {direction: "sendonly"});
  } else {
    for (const [kind, count] of Object.entries(sections)) {
      for (let i = 0; i < count; i += 1) pc.addTransceiver(kind, {direction: "recvonly"});
    }
    pc.addEventListener("track", onTrack);
  }
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((done) => {
      if (pc.iceGatheringState === "complete") return done();
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") done();
      });
      setTimeout(done, 3000);
    });
    const headers = {"Content-Type": "application/sdp", Authorization: `Bearer ${credential}`};
    if (proof) headers["Relay-Proof-Of-Work"] = `${proof.challenge} ${proof.nonces.join(",")}`;
    let response;
    try {
      response = await fetch(path, {
        method: "POST", cache: "no-store", credentials: "omit", headers,
        body: pc.localDescription.sdp,
      });
    } catch (_) {
      throw new relay.ApiError(0, "network", "the relay cannot be reached", 0);
    }
    if (response.status !== 201) throw await refusal(response);
    const answer = await response.text();
    await pc.setRemoteDescription({type: "answer", sdp: answer});
    const location = response.headers.get("Location");
    const link = response.headers.get("Link") || "";
    const found = /<([^>]+)>;[^,]*rel="urn:ietf:params:whep:ext:core:server-sent-events"/.exec(link);
    return {pc, location, events: found ? found[1] : null, placed: placed(answer)};
  } catch (error) {
    pc.close();
    throw error;
  }
};

// The streams an answer placed, by SSRC (`a=ssrc:N`, RFC 5576), and how many of each kind.
function placed(answer) {
  const ssrcs = new Set();
  const kinds = {};
  for (const section of answer.split(/\r?\nm=/).slice(1)) {
    const kind = section.split(" ", 1)[0];
    const found = /^a=ssrc:(\d+) /m.exec(section);
    if (!found) continue;
    ssrcs.add(Number(found[1]));
    kinds[kind] = (kinds[kind] || 0) + 1;
  }
  return {ssrcs, kinds};
}

// relay.connect, and while the meeting is under attack (428: a password join must carry a proof
// of work) the proof solved in a Web Worker (pow.js) and the join sent again, at most 3 times
// (a challenge can expire or the meeting ask for more meanwhile). `onProof(found, needed)`
// shows the progress.
relay.connectWithProof = async (options, onProof) => {
  let proof;
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await relay.connect({...options, proof});
    } catch (error) {
      if (!(error instanceof relay.ApiError) || error.status !== 428 || attempt === 3) throw error;
      const {challenge, difficulty, solutions} = error.detail;
      proof = {challenge, nonces: await relay.solve(challenge, difficulty, solutions, onProof)};
    }
  }
};

relay.solve = (challenge, difficulty, solutions, onProgress = () => {}) =>
  new Promise((resolve, reject) => {
    const worker = new Worker("/assets/pow.js");
    worker.onmessage = ({data}) => {
      if (data.nonces) {
        worker.terminate();
        resolve(data.nonces);
      } else {
        onProgress(data.found, data.solutions);
      }
    };
    worker.onerror = (event) => { worker.terminate(); reject(new Error(event.message)); };
    worker.postMessage({challenge, difficulty, solutions});
  });

// What a person reads for a refused call: the API's words, with what to do about it.
relay.explain = (error) => {
  if (!(error instanceof relay.ApiError)) return `Something went wrong: ${error.message}`;
  switch (error.status) {
    case 0: return "The relay cannot be reached. Check your connection and try again.";
    case 401: return "This needs a credential: enter it and try again.";
    case 403: return error.code === "expelled"
      ? "You were removed from this meeting by the host."
      : `Refused: ${error.message}.`;
    case 404: return "There is no such meeting. Check the link you were given.";
    case 409: return "This meeting has ended.";
    case 423: return "This meeting is locked: nobody new may join.";
    case 428: return "This meeting is seeing many wrong passwords: try again in a minute.";
    case 429: return `Too many attempts. Try again in ${Math.max(1, error.retryAfter)} s.`;
    case 503: return `The relay cannot do this now: ${error.message}.`;
    default: return `Refused: ${error.message}.`;
  }
};

// An element: relay.el("td", {class: "n"}, "text", child...). Text is text, never markup.
relay.el = (tag, attributes = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "on") for (const [event, fn] of Object.entries(value)) node.addEventListener(event, fn);
    else if (value === true) node.setAttribute(name, "");
    else if (value !== false && value !== null && value !== undefined) node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
};

relay.show = (id, on) => { document.getElementById(id).hidden = !on; };
relay.say = (id, text, kind = "info") => {
  const node = document.getElementById(id);
  node.textContent = text;
  node.dataset.kind = kind;
  node.hidden = !text;
};

// The meeting id: the last part of the page's address (/m/ID, /host/ID).
relay.meetingId = () => decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());

relay.number = (n) => Number(n).toLocaleString("en");
relay.bytes = (n) => {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
};
relay.duration = (s) => {
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return h ? `${h} h ${m} min` : m ? `${m} min ${r} s` : `${r} s`;
};
relay.time = (t) => new Date(t * 1000).toLocaleTimeString("en-GB");

// A credential kept for this tab only (sessionStorage: gone when the tab closes).
relay.kept = {
  get: (name) => sessionStorage.getItem(`relay.${name}`),
  set: (name, value) => sessionStorage.setItem(`relay.${name}`, value),
  forget: (name) => sessionStorage.removeItem(`relay.${name}`),
};
