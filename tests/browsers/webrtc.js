// What a web page does to publish over WHIP or play over WHEP (RFC 9725), shared by the
// browser tests (tests/test_browsers.py drives Chromium with Playwright, firefox.mjs drives
// Firefox with puppeteer-core over WebDriver BiDi). Loaded into a page of the API's origin, so
// fetch() to /v1 is same-origin.

// Offer (candidates included: the relay takes no trickle), POST, answer. Returns
// {status, location} or {status, error}; the connection is window.relayPc. For a test of the
// network in between: `via` ("host:port") reaches the relay through a proxy there instead
// (its candidate rewritten), and `withoutNack` strikes the generic NACK from the offer, so
// the browser asks for no retransmission.
window.relayConnect = async ({path, credential, publish, via, withoutNack}) => {
  const pc = new RTCPeerConnection();
  if (publish) {
    const stream = await navigator.mediaDevices.getUserMedia({audio: true, video: true});
    for (const track of stream.getTracks()) pc.addTransceiver(track, {direction: "sendonly"});
  } else {
    pc.addTransceiver("audio", {direction: "recvonly"});
    pc.addTransceiver("video", {direction: "recvonly"});
    // Played out, as a page would: a browser measures audio energy only of what it plays.
    pc.addEventListener("track", (event) => {
      const element = document.createElement(event.track.kind);
      element.srcObject = new MediaStream([event.track]);
      element.autoplay = true;
      document.body.appendChild(element);
      element.play().catch(() => {});
    });
  }
  const offer = await pc.createOffer();
  // No generic NACK offered, so none answered: the browser asks for no retransmission.
  if (withoutNack) offer.sdp = offer.sdp.replace(/^a=rtcp-fb:\d+ nack\r\n/gm, "");
  await pc.setLocalDescription(offer);
  await new Promise((done) => {
    if (pc.iceGatheringState === "complete") return done();
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") done();
    });
    setTimeout(done, 3000);
  });
  window.relayOffer = pc.localDescription.sdp;  // for a failing test to show
  const response = await fetch(path, {
    method: "POST",
    headers: {"Content-Type": "application/sdp", "Authorization": `Bearer ${credential}`},
    body: pc.localDescription.sdp,
  });
  const text = await response.text();
  if (response.status !== 201) return {status: response.status, error: text};
  let answer = text;
  if (via) {
    const [host, port] = via.split(":");
    answer = answer.replace(/^(a=candidate:\S+ \d+ udp \d+ )\S+ \d+( typ host)/gm, `$1${host} ${port}$2`);
  }
  await pc.setRemoteDescription({type: "answer", sdp: answer});
  window.relayPc = pc;
  return {status: 201, location: response.headers.get("Location")};
};

// The connection's state and, per kind, what came in (packets, audio energy, frames decoded)
// and went out (packets sent).
window.relayStats = async () => {
  const out = {state: window.relayPc.connectionState, audio: null, video: null};
  (await window.relayPc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp") {
      out[s.kind] = {packets: s.packetsReceived, energy: s.totalAudioEnergy || 0,
                     frames: s.framesDecoded || 0, lost: s.packetsLost || 0,
                     nacks: s.nackCount || 0, freezes: s.freezeCount || 0,
                     frozen: s.totalFreezesDuration || 0};
    }
    if (s.type === "outbound-rtp") out["sent_" + s.kind] = s.packetsSent;
  });
  return out;
};
