// Firefox ESR as a WebRTC peer of a running relay, over WebDriver BiDi (puppeteer-core, no
// browser download): node firefox.mjs API_URL PATH CREDENTIAL publish|play SECONDS
// play: prints the stats as JSON once audio energy and decoded frames show (or at the end).
// publish: keeps publishing its fake camera and microphone for SECONDS, then prints its stats.
// RELAY_DEBUG_SDP=1 also prints the offer the page made (to stderr).
import {readFile} from "node:fs/promises";
import puppeteer from "puppeteer-core";

const [api, path, credential, mode, seconds] = process.argv.slice(2);
const script = await readFile(new URL("./webrtc.js", import.meta.url), "utf8");
const browser = await puppeteer.launch({
  browser: "firefox",
  executablePath: process.env.FIREFOX || "/usr/bin/firefox-esr",
  headless: true,
  extraPrefsFirefox: {
    "media.navigator.streams.fake": true,  // a fake camera and microphone
    "media.navigator.permission.disabled": true,
    "media.peerconnection.ice.loopback": true,  // the relay listens on 127.0.0.1
    "media.peerconnection.ice.obfuscate_host_addresses": false,
    "media.autoplay.default": 0,
  },
});
try {
  const page = await browser.newPage();
  await page.goto(api + "/healthz");
  await page.addScriptTag({content: script});
  const connected = await page.evaluate(
    (args) => window.relayConnect(args), {path, credential, publish: mode === "publish"});
  if (connected.status !== 201) {
    console.log(JSON.stringify({connected}));
    process.exitCode = 1;
  } else {
    const deadline = Date.now() + Number(seconds) * 1000;
    let stats;
    for (;;) {
      stats = await page.evaluate(() => window.relayStats());
      const playing = stats.audio && stats.video && stats.audio.packets > 20 &&
        stats.audio.energy > 0 && stats.video.frames > 5;
      if ((mode === "play" && playing) || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    if (process.env.RELAY_DEBUG_SDP) console.error(await page.evaluate(() => window.relayOffer));
    console.log(JSON.stringify({connected, stats}));
  }
} finally {
  await browser.close();
}
