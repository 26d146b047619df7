// What a web page does to publish over WHIP or play over WHEP (RFC 9725), shared by the
// browser tests (tests/test_browsers.py drives Chromium with Playwright, firefox.mjs drives
// Firefox with puppeteer-core over WebDriver BiDi). Loaded into a page of the API's origin, so
// fetch() to /v1 is same-origin.

// Offer (candidates included: the relay takes no trickle), POST, answer. Returns
// {status, location} or {status, error}; the connection is window.relayPc.
window.relayConnect = async ({path, credential, publish}) => {
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
  await pc.setLocalDescription(await pc.createOffer());
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
  await pc.setRemoteDescription({type: "answer", sdp: text});
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
                     frames: s.framesDecoded || 0};
    }
    if (s.type === "outbound-rtp") out["sent_" + s.kind] = s.packetsSent;
  });
  return out;
};
