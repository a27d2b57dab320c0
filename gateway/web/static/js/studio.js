// Studio: the stream key (hidden, reveal, copy, rotate), broadcast title and go-live,
// live stats with sparklines, and the user's videos with their status.
import { api, currentUser } from './session.js';
import { drawSpark, series } from './charts.js';

const POLL_MS = 2000;
const byId = (id) => document.getElementById(id);
const keyInput = byId('stream-key');
const keyStatus = byId('key-status');
const charts = { viewers: series(), bitrate: series(), fps: series(), chat: series() };
let streamId = '';

// The Clipboard API needs a secure context (https or localhost); elsewhere the text is
// shown selected so Ctrl+C copies it.
async function copy(input, what) {
  try {
    await navigator.clipboard.writeText(input.value);
    keyStatus.textContent = `${what} copied.`;
  } catch {
    if (input === keyInput) {
      input.type = 'text';
      byId('reveal-key').textContent = 'Hide';
      byId('reveal-key').setAttribute('aria-pressed', 'true');
    }
    input.focus();
    input.select();
    keyStatus.textContent = `${what} selected: press Ctrl+C (or ⌘C) to copy it.`;
  }
}

function showKey(out) {
  keyInput.value = out.stream_key;
  byId('rtmp-url').value = out.rtmp_url;
  streamId = out.stream_id;
  byId('watch-link').href = `/watch/${encodeURIComponent(streamId)}`;
}

function setupKey() {
  byId('key-form').addEventListener('submit', (event) => event.preventDefault());
  const reveal = byId('reveal-key');
  reveal.addEventListener('click', () => {
    const hidden = keyInput.type === 'password';
    keyInput.type = hidden ? 'text' : 'password';
    reveal.textContent = hidden ? 'Hide' : 'Reveal';
    reveal.setAttribute('aria-pressed', String(hidden));
  });
  byId('copy-key').addEventListener('click', () => copy(keyInput, 'Stream key'));
  byId('copy-server').addEventListener('click', () => copy(byId('rtmp-url'), 'Server URL'));
  // Two presses, no confirm() dialog: the old key stops working at once.
  const rotate = byId('rotate-key');
  let armed = false;
  rotate.addEventListener('click', async () => {
    if (!armed) {
      armed = true;
      rotate.textContent = 'Press again to rotate';
      setTimeout(() => { armed = false; rotate.textContent = 'Rotate'; }, 4000);
      return;
    }
    armed = false;
    rotate.textContent = 'Rotate';
    try {
      showKey(await api('/api/v2/streams/key/rotate', { method: 'POST' }));
      keyStatus.textContent = 'New key issued; the old one no longer works.';
    } catch (err) {
      keyStatus.textContent = `Rotation failed: ${err.message}`;
    }
  });
}

function setupBroadcast() {
  const status = byId('broadcast-status');
  byId('broadcast-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await api('/api/v2/streams/start', {
        method: 'POST',
        body: { title: byId('broadcast-title').value, description: byId('broadcast-description').value },
      });
      status.textContent = 'Saved. Start streaming from OBS with the server and key above.';
    } catch (err) {
      status.textContent = `Not saved: ${err.message}`;
    }
  });
  byId('stop-live').addEventListener('click', async () => {
    try {
      await api('/api/v2/streams/stop', { method: 'POST' });
      status.textContent = 'Stopping the broadcast…';
    } catch (err) {
      status.textContent = `Stop failed: ${err.message}`;
    }
  });
}

function uptime(seconds) {
  const s = Math.floor(seconds || 0);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h ? `${h} h ${m} min` : `${m} min ${s % 60} s`;
}

async function refreshStats() {
  try {
    const stats = await api('/api/v2/stats/live');
    const live = Boolean(stats.live);
    byId('studio-live').hidden = !live;
    byId('studio-offline').hidden = live;
    const kbps = stats.bitrate_kbps || 0;
    const values = { viewers: stats.viewers, bitrate: kbps, fps: stats.fps, chat: stats.chat_per_minute };
    byId('stat-viewers').textContent = String(values.viewers);
    byId('stat-peak').textContent = String(stats.peak_viewers);
    byId('stat-bitrate').textContent = live ? `${Math.round(kbps)} kbit/s` : '–';
    byId('stat-fps').textContent = live && values.fps ? Number(values.fps).toFixed(0) : '–';
    byId('stat-uptime').textContent = live ? uptime(stats.uptime_s) : '–';
    byId('stat-chat').textContent = String(Math.round(values.chat));
    for (const [name, value] of Object.entries(values)) {
      charts[name].push(Number(value));
      drawSpark(byId(`chart-${name}`), charts[name].values);
    }
  } catch {
    // not in the catalog yet right after registering: the next poll tries again
  }
}

function cell(text) {
  const td = document.createElement('td');
  td.textContent = text;
  return td;
}

function duration(seconds) {
  const s = Math.round(seconds || 0);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

async function refreshVideos() {
  try {
    const videos = await api('/api/v2/me/videos');
    const body = byId('my-videos').querySelector('tbody');
    body.replaceChildren(...videos.map((video) => {
      const row = document.createElement('tr');
      const title = document.createElement('td');
      const link = document.createElement('a');
      link.href = `/v/${encodeURIComponent(video.video_id)}`;
      link.textContent = video.title || 'Untitled video';
      title.append(link);
      const status = video.status === 'processing'
        ? `processing ${Math.round(video.progress || 0)}%`
        : video.status === 'failed' ? `failed: ${video.error || ''}` : video.status;
      row.append(title, cell(status), cell(duration(video.duration_s)));
      return row;
    }));
    byId('my-videos-empty').hidden = videos.length > 0;
  } catch {
    // keep the last list
  }
}

async function refreshEarnings() {
  try {
    const earnings = await api('/api/v2/wallet/earnings?limit=20');
    byId('earnings-total').textContent = String(earnings.total);
    byId('earnings-count').textContent = String(earnings.count);
    byId('earnings').querySelector('tbody').replaceChildren(...earnings.recent.map((entry) => {
      const row = document.createElement('tr');
      const when = new Date(entry.created_at_ms).toLocaleString();
      row.append(cell(when), cell(String(entry.amount)), cell(entry.text || ''));
      return row;
    }));
  } catch {
    // the chat component may be restarting: the next poll tries again
  }
}

const edited = new WeakSet();

function trackEdits(field) {
  field.addEventListener('input', () => edited.add(field), { once: true });
}

function fillUnlessEdited(field, value) {
  if (!edited.has(field)) field.value = value;
}

async function main() {
  if (!currentUser()) {
    document.querySelector('.needs-login').hidden = false;
    return;
  }
  byId('studio').hidden = false;
  setupKey();
  setupBroadcast();
  trackEdits(byId('broadcast-title'));
  trackEdits(byId('broadcast-description'));
  try {
    showKey(await api('/api/v2/streams/key'));
    const channel = await api(`/api/v2/streams/${encodeURIComponent(streamId)}`, { auth: false });
    // What the user typed while this loaded wins: a title typed at once was blanked
    // by a late answer, and the required field then blocked Go live.
    fillUnlessEdited(byId('broadcast-title'), channel.title || '');
    fillUnlessEdited(byId('broadcast-description'), channel.description || '');
  } catch (err) {
    keyStatus.textContent = err.status === 401 ? 'Please log in again.' : `Could not load: ${err.message}`;
  }
  refreshStats();
  refreshVideos();
  refreshEarnings();
  setInterval(refreshStats, POLL_MS);
  setInterval(refreshVideos, POLL_MS * 3);
  setInterval(refreshEarnings, POLL_MS * 3);
}

main();
