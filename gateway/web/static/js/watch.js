// Watch live: the player follows the channel's live state (offline → plays by itself),
// the LIVE badge and viewer count follow the stats API, the chat runs beside it.
import { api } from './session.js';
import { attachPlayer } from './player.js';
import { startChat } from './chat.js';
import { startWallet } from './wallet.js';

const POLL_MS = 2000;
const root = document.getElementById('watch');
const { streamId, playlist, chatChannel, ownerId } = root.dataset;
const video = document.getElementById('video');
const byId = (id) => document.getElementById(id);

let player = null;

function setLive(live) {
  byId('live-badge').hidden = !live;
  byId('offline-badge').hidden = live;
  byId('offline').hidden = live;
  root.dataset.live = live ? 'true' : 'false';
  if (live && !player) player = attachPlayer(video, playlist, { live: true });
  if (!live && player) {
    player.destroy();
    player = null;
  }
}

async function refresh() {
  try {
    const channel = await api(`/api/v2/streams/${encodeURIComponent(streamId)}`, { auth: false });
    setLive(Boolean(channel.live));
    byId('viewer-count').textContent = String(channel.stats?.viewers ?? 0);
    byId('channel-title').textContent = channel.title || 'Untitled stream';
    byId('channel-description').textContent = channel.description || '';
  } catch {
    // keep the last state; the next poll tries again
  }
}

setLive(root.dataset.live === 'true');
setInterval(refresh, POLL_MS);
refresh();

const wallet = startWallet({
  box: byId('wallet'),
  balance: byId('wallet-balance'),
  topup: byId('wallet-topup'),
  status: byId('wallet-status'),
});

startChat({
  channel: chatChannel,
  ownerId,
  onWallet: () => wallet.refresh(),
  els: {
    log: byId('chat-log'),
    form: byId('chat-form'),
    input: byId('chat-input'),
    amount: byId('chat-amount'),
    send: byId('chat-send'),
    status: byId('chat-status'),
    effects: byId('effects'),
    pinned: byId('pinned'),
    hint: byId('chat-hint'),
  },
});
