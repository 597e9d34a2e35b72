// The watch page's reports (#16): the view token the box put in the page (a random id per page
// view, no cookie); each report at most once, by sendBeacon to the box: start, first-frame,
// watched at 3/10/30 s of playing, end (seconds played, when the guest leaves), unmute. The page
// loads it at its first frame: never before the picture.
(() => {
  const v = document.getElementById('v');
  if (!v || !navigator.sendBeacon || !v.dataset.v) return;
  const clip = decodeURIComponent(v.getAttribute('src').split('/').pop());
  const id = v.dataset.v;
  // The campaign that brought the guest: this link's own (a QR straight to this page), else the
  // landing page's, kept in the tab's sessionStorage (no cookie). The box counts configured names.
  let campaign = new URLSearchParams(location.search).get('campaign');
  try {
    if (campaign) sessionStorage.setItem('campaign', campaign);
    else campaign = sessionStorage.getItem('campaign');
  } catch (e) { /* storage refused: the link's own only */ }
  const sent = new Set();
  const send = (report, seconds = 0, once = report) => {
    if (sent.has(once)) return;
    sent.add(once);
    const body = JSON.stringify({ id, clip, report, seconds, campaign: campaign || undefined });
    navigator.sendBeacon('/api/v1/player/watch', new Blob([body], { type: 'application/json' }));
  };
  // Seconds played: the steps of currentTime while playing (a seek is not watching).
  let watched = 0, last = null;
  v.addEventListener('timeupdate', () => {
    const step = last === null ? 0 : v.currentTime - last;
    if (!v.paused && step > 0 && step < 1.5) watched += step;
    last = v.currentTime;
    for (const mark of [3, 10, 30]) if (watched >= mark) send('watched', mark, `w${mark}`);
  });
  v.addEventListener('seeked', () => { last = v.currentTime; });
  v.addEventListener('playing', () => send('start'));
  const framed = () => send('first-frame');
  if (!v.paused && v.readyState > 2) send('start');
  if (v.readyState >= 2) framed();
  else if (v.requestVideoFrameCallback) v.requestVideoFrameCallback(framed);
  else v.addEventListener('loadeddata', framed, { once: true });
  v.addEventListener('volumechange', () => { if (!v.muted && v.volume > 0) send('unmute'); });
  addEventListener('pagehide', () => send('end', Math.round(watched * 10) / 10));
})();
