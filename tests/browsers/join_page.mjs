// Firefox ESR on the relay's join page, over WebDriver BiDi (puppeteer-core, no browser
// download), as an attendee would use it: type a name and the password, press Join, listen.
// node join_page.mjs JOIN_URL NAME PASSWORD SECONDS SCREENSHOT [then-removed]
// Prints {player, level, packets, notice} as JSON once the page's sound level meter shows
// energy and its health panel shows packets (or at the end), and saves a screenshot. With
// `then-removed` it goes on: it waits (SECONDS at most) for the page to say its participant
// was removed and prints {removed: notice}, then loads the page again, joins again and prints
// {again: notice} (the test locks the meeting meanwhile: the notice says so).
import puppeteer from "puppeteer-core";

const [url, name, password, seconds, screenshot] = process.argv.slice(2);
const browser = await puppeteer.launch({
  browser: "firefox",
  executablePath: process.env.FIREFOX || "/usr/bin/firefox-esr",
  headless: true,
  extraPrefsFirefox: {
    "media.peerconnection.ice.loopback": true,  // the relay listens on 127.0.0.1
    "media.peerconnection.ice.obfuscate_host_addresses": false,
    "media.autoplay.default": 0,
    "media.autoplay.block-webaudio": false,
  },
});
try {
  const page = await browser.newPage();
  await page.setViewport({width: 1100, height: 900});
  await page.goto(url);
  await page.waitForSelector("#join:not([hidden])");
  await page.type("#name", name);
  await page.type("#secret", password);
  await page.click("#join-button");
  const deadline = Date.now() + Number(seconds) * 1000;
  let seen;
  for (;;) {
    seen = await page.evaluate(() => ({
      player: !document.getElementById("player").hidden,
      level: Number(document.getElementById("level").dataset.level || 0),
      packets: Number(document.getElementById("health").dataset.packets || 0),
      notice: document.getElementById("notice").textContent,
      context: document.getElementById("level").dataset.context,
      source: document.getElementById("level").dataset.source,
    }));
    if ((seen.level > 0.001 && seen.packets > 50) || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  await page.screenshot({path: screenshot, fullPage: true});
  console.log(JSON.stringify(seen));
  if (process.argv[7] === "then-removed") {
    const until = Date.now() + Number(seconds) * 1000;
    let notice = "";
    while (!notice.includes("removed") && Date.now() < until) {
      notice = await page.evaluate(() => document.getElementById("notice").textContent);
      await new Promise((r) => setTimeout(r, 20));
    }
    console.log(JSON.stringify({removed: notice}));
    await page.screenshot({path: screenshot.replace(/\.png$/, "-removed.png"), fullPage: true});
    await page.reload();
    await page.waitForSelector("#join:not([hidden])");
    await page.type("#name", name);
    await page.type("#secret", password);
    await page.click("#join-button");
    let again = "";
    while (!/locked|Refused|ended/.test(again) && Date.now() < until) {
      again = await page.evaluate(() => document.getElementById("notice").textContent);
      await new Promise((r) => setTimeout(r, 50));
    }
    await page.screenshot({path: screenshot.replace(/\.png$/, "-locked.png"), fullPage: true});
    console.log(JSON.stringify({again}));
  }
} finally {
  await browser.close();
}
