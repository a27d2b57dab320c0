// hls.js on a <video>: low-latency for live (NOTES.md: catch up at 1.2×), plain for VOD.
// A live playlist can 404 for a moment around a stream's start: fatal network errors
// retry with a fresh player instead of giving up.
const RETRY_MS = 1500;

export function attachPlayer(video, src, { live = false, onFatal } = {}) {
  const Hls = window.Hls;
  let hls = null;
  let stopped = false;
  let retryTimer = null;

  const play = () => video.play().catch(() => { /* autoplay refused: the user presses play */ });

  const start = () => {
    if (stopped) return;
    if (Hls && Hls.isSupported()) {
      hls = new Hls(live
        ? { lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.2, backBufferLength: 30 }
        : { capLevelToPlayerSize: true });
      hls.on(Hls.Events.MANIFEST_PARSED, play);
      hls.on(Hls.Events.ERROR, (_event, data) => {
        if (!data.fatal) return;
        if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
          hls.recoverMediaError();
          return;
        }
        hls.destroy();
        hls = null;
        if (onFatal) onFatal(data);
        retryTimer = setTimeout(start, RETRY_MS);
      });
      hls.loadSource(src);
      hls.attachMedia(video);
    } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
      video.src = src; // Safari plays HLS natively
      play();
    }
  };

  start();
  return {
    get hls() { return hls; },
    destroy() {
      stopped = true;
      clearTimeout(retryTimer);
      if (hls) hls.destroy();
      hls = null;
      video.removeAttribute('src');
      video.load();
    },
  };
}
