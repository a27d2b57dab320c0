// Watch a video: waits out processing, plays with hls.js, and shows scrub previews
// from the transcoder's sprite sheet and WebVTT (`sprite.jpg#xywh=x,y,w,h` cues).
import { api } from './session.js';
import { attachPlayer } from './player.js';

const POLL_MS = 2000;
const root = document.getElementById('vod');
const video = document.getElementById('video');
const seek = document.getElementById('seek');
const scrub = document.getElementById('scrub');
const frame = document.getElementById('scrub-frame');
const scrubTime = document.getElementById('scrub-time');
const { videoId, vtt } = root.dataset;

function parseTime(text) {
  const parts = text.trim().split(':').map(Number);
  return parts.reduce((total, part) => total * 60 + part, 0);
}

function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

async function loadCues() {
  const response = await fetch(vtt);
  if (!response.ok) return [];
  const base = new URL(vtt, location.href);
  const cues = [];
  for (const block of (await response.text()).split(/\r?\n\r?\n/)) {
    const lines = block.trim().split(/\r?\n/);
    const timing = lines.findIndex((line) => line.includes('-->'));
    if (timing < 0 || !lines[timing + 1]) continue;
    const [start, end] = lines[timing].split('-->').map(parseTime);
    const [file, hash] = lines[timing + 1].trim().split('#xywh=');
    if (!hash) continue;
    const [x, y, w, h] = hash.split(',').map(Number);
    cues.push({ start, end, url: new URL(file, base).href, x, y, w, h });
  }
  return cues;
}

function setupScrub(cues) {
  const show = (time) => {
    const ratio = Number(seek.max) > 0 ? time / Number(seek.max) : 0;
    scrub.style.left = `${Math.min(90, Math.max(10, ratio * 100))}%`; // keep it on screen
    const cue = cues.find((c) => time >= c.start && time < c.end) || cues[cues.length - 1];
    if (!cue) return;
    frame.style.width = `${cue.w}px`;
    frame.style.height = `${cue.h}px`;
    frame.style.backgroundImage = `url("${cue.url}")`;
    frame.style.backgroundPosition = `-${cue.x}px -${cue.y}px`;
    scrubTime.textContent = clock(time);
    scrub.hidden = false;
  };
  const hide = () => { scrub.hidden = true; };
  seek.addEventListener('pointermove', (event) => {
    const box = seek.getBoundingClientRect();
    const ratio = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
    show(ratio * Number(seek.max));
  });
  seek.addEventListener('pointerleave', hide);
  seek.addEventListener('input', () => show(Number(seek.value)));
  seek.addEventListener('blur', hide);
  seek.addEventListener('change', hide);
}

function play(url) {
  root.dataset.status = 'ready';
  document.getElementById('processing').hidden = true;
  attachPlayer(video, url, { live: false });
  seek.addEventListener('input', () => { video.currentTime = Number(seek.value); });
  video.addEventListener('timeupdate', () => {
    if (document.activeElement !== seek) seek.value = String(video.currentTime);
  });
  video.addEventListener('loadedmetadata', () => {
    if (Number.isFinite(video.duration)) seek.max = String(video.duration);
  });
  loadCues().then((cues) => { if (cues.length) setupScrub(cues); }).catch(() => {});
}

async function waitUntilReady() {
  try {
    const info = await api(`/api/v2/videos/${encodeURIComponent(videoId)}`, { auth: false });
    const progress = document.getElementById('processing-progress');
    if (progress) progress.textContent = String(Math.round(info.progress || 0));
    if (info.status === 'ready' && info.playback_url) {
      if (info.poster_url) video.poster = info.poster_url;
      play(info.playback_url);
      return;
    }
    if (info.status === 'failed') {
      location.reload(); // the server renders the failure with its reason
      return;
    }
  } catch {
    // not in the catalog yet: keep waiting
  }
  setTimeout(waitUntilReady, POLL_MS);
}

if (root.dataset.status === 'ready' && root.dataset.playlist) play(root.dataset.playlist);
else if (root.dataset.status !== 'failed') waitUntilReady();
