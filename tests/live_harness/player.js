// Plays ?src= with hls.js and exposes what the tests read as window.live.
// ?ll=0 turns low-latency mode off (plain HLS, the way the nginx-rtmp peer is played).
"use strict";

(() => {
  const params = new URLSearchParams(window.location.search);
  const video = document.getElementById("video");
  const errors = [];
  const hls = new Hls({
    lowLatencyMode: params.get("ll") !== "0",
    // hls.js defaults to 1 (never catches up); NOTES.md: ~1.2 keeps a player at the edge.
    maxLiveSyncPlaybackRate: 1.2,
    // Each stall moves hls.js's target latency back by this much (default 1 s, capped at
    // one target duration); 0.25 s keeps a player near the edge after a hiccup.
    liveSyncOnStallIncrease: 0.25,
    backBufferLength: 10,
  });
  hls.on(Hls.Events.ERROR, (_event, data) => {
    errors.push(`${data.type}/${data.details}${data.fatal ? "/fatal" : ""}`);
  });
  hls.on(Hls.Events.MANIFEST_PARSED, () => {
    video.play().catch((err) => errors.push(`play/${err.name}`));
  });
  hls.loadSource(params.get("src"));
  hls.attachMedia(video);
  window.live = {
    hls,
    video,
    errors,
    sample() {
      return {
        currentTime: video.currentTime,
        latency: hls.latency,
        lowLatencyMode: hls.lowLatencyMode,
        paused: video.paused,
        errors: errors.slice(),
      };
    },
  };
})();
