// The chat panel over the official centrifuge SDK: history, send, effects, super chats.
// Everything a user wrote goes into the page with textContent, never as HTML.
import { currentUser, token } from './session.js';

const HISTORY_LIMIT = 50;
const MAX_LINES = 300;
const MAX_EFFECT_SPRITES = 12;
const HEX_COLOR = /^#[0-9a-fA-F]{3,8}$/;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// onWallet: called when our credits changed: our super chat was accepted, or (the
// streamer) one arrived in our channel.
export function startChat({ channel, ownerId, els, onWallet = () => {} }) {
  const { log, form, input, amount, send, status, effects, pinned, hint } = els;
  const seen = new Set();
  const user = currentUser();
  const jwt = token();
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const client = new window.Centrifuge(
    `${scheme}://${location.host}/connection/websocket`, jwt ? { token: jwt } : {});
  const sub = client.newSubscription(channel);

  const setEnabled = (on) => {
    const can = on && Boolean(user);
    input.disabled = !can;
    amount.disabled = !can;
    send.disabled = !can;
  };
  if (user) hint.textContent = user.id === ownerId
    ? 'You own this channel: /slow 10, /ban name, /timeout name 60, /clear … are commands.'
    : 'Add credits to send a super chat: it is highlighted and pinned.';

  const scrollDown = () => { log.scrollTop = log.scrollHeight; };

  const addSystem = (text) => {
    log.append(el('li', 'system', text));
    scrollDown();
  };

  const pin = (line, seconds) => {
    const copy = line.cloneNode(true);
    copy.classList.add('pinned-line');
    pinned.append(copy);
    setTimeout(() => copy.remove(), seconds * 1000);
  };

  // One chat line; null when this message is already shown (history and live overlap).
  const renderMessage = (data) => {
    if (data.id && seen.has(data.id)) return null;
    if (data.id) seen.add(data.id);
    const line = el('li', 'message');
    line.dataset.userId = data.user?.id ?? '';
    const name = el('span', 'author', data.user?.name ?? '?');
    if (data.user?.id && data.user.id === ownerId) name.classList.add('owner');
    line.append(name, el('span', 'text', String(data.text ?? '')));
    const sc = data.superchat;
    if (sc) {
      line.classList.add('superchat');
      if (typeof sc.color === 'string' && HEX_COLOR.test(sc.color)) {
        line.style.setProperty('--sc-color', sc.color); // CSSOM: allowed under our CSP
      }
      line.prepend(el('span', 'amount', `${Number(sc.amount) || 0} credits`));
      // Pinned for what is left of its tier's time (a line from history may have none).
      const age = (Date.now() - Number(data.ts || 0)) / 1000;
      const remaining = Math.min(Number(sc.pin_seconds) || 0, 3600) - Math.max(0, age);
      if (remaining > 0) pin(line, remaining);
    }
    return line;
  };

  const trim = () => {
    while (log.children.length > MAX_LINES) log.firstElementChild.remove();
  };

  const addMessage = (data) => {
    const line = renderMessage(data);
    if (!line) return;
    log.append(line);
    trim();
    scrollDown();
  };

  const burst = (counts) => {
    for (const [emoji, count] of Object.entries(counts || {})) {
      const n = Math.min(Number(count) || 0, MAX_EFFECT_SPRITES);
      for (let i = 0; i < n; i += 1) {
        const sprite = el('span', 'effect', String(emoji).slice(0, 8));
        sprite.style.left = `${5 + Math.random() * 90}%`;
        sprite.style.animationDelay = `${Math.random() * 0.6}s`;
        sprite.addEventListener('animationend', () => sprite.remove());
        effects.append(sprite);
      }
    }
  };

  const moderation = (data) => {
    if (data.action === 'clear') {
      log.replaceChildren();
      addSystem('The chat was cleared by the streamer.');
      return;
    }
    if (data.action === 'ban' && data.target_user_id) {
      for (const line of log.querySelectorAll('li.message')) {
        if (line.dataset.userId === data.target_user_id) line.remove();
      }
    }
    const detail = data.seconds ? ` (${data.seconds} s)` : '';
    addSystem(`Moderation: ${String(data.action)}${detail}`);
  };

  // Effects animate from the chat component's per-second `effect` pushes only (not per
  // message), so a burst of 🔥 from many viewers is one bounded animation.
  const handle = (data) => {
    if (!data || typeof data !== 'object') return;
    if (data.type === 'message') {
      addMessage(data);
      if (data.superchat && user && user.id === ownerId) onWallet();
    }
    else if (data.type === 'effect') burst(data.counts);
    else if (data.type === 'moderation') moderation(data);
  };

  sub.on('publication', (ctx) => handle(ctx.data));
  sub.on('subscribed', async () => {
    status.textContent = user ? 'Connected' : 'Connected (read-only: log in to chat)';
    setEnabled(true);
    try {
      const history = await sub.history({ limit: HISTORY_LIMIT, reverse: true });
      // Newest first from the server; older lines go above what arrived meanwhile.
      const lines = [...history.publications].reverse()
        .filter((pub) => pub.data?.type === 'message')
        .map((pub) => renderMessage(pub.data))
        .filter(Boolean);
      log.prepend(...lines);
      trim();
      scrollDown();
    } catch {
      addSystem('Chat history is not available right now.');
    }
  });
  sub.on('unsubscribed', () => { setEnabled(false); status.textContent = 'Chat closed'; });
  client.on('connecting', () => { setEnabled(false); status.textContent = 'Connecting…'; });
  client.on('disconnected', (ctx) => {
    setEnabled(false);
    status.textContent = `Disconnected: ${ctx.reason || 'closed'}`;
  });

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    const credits = Math.max(0, Math.floor(Number(amount.value) || 0));
    const data = credits > 0 ? { text, amount: credits } : { text };
    send.disabled = true;
    try {
      await sub.publish(data);
      input.value = '';
      amount.value = '';
      status.textContent = 'Connected';
      if (credits > 0) onWallet();
    } catch (err) {
      status.textContent = `Not sent: ${err?.message || 'refused'}`;
    } finally {
      send.disabled = input.disabled;
      input.focus();
    }
  });

  sub.subscribe();
  client.connect();
  return client;
}
