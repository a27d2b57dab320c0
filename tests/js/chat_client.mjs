// Drives the official centrifuge JS SDK (npm "centrifuge", unchanged) against the
// gateway's /connection/websocket. Node 20: run with --experimental-websocket (the
// SDK uses the global WebSocket, as in a browser).
//
// Env: WS_URL, CHANNEL, TOKEN (a gateway JWT), TEXT. Prints one JSON line: what the
// authenticated and the anonymous client saw, for the pytest side to check.
import { Centrifuge } from 'centrifuge';

const { WS_URL, CHANNEL, TOKEN, TEXT } = process.env;
const DEADLINE_MS = 15000;

function deadline(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), DEADLINE_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function open(token) {
  const client = new Centrifuge(WS_URL, token ? { token } : {});
  const publications = [];
  const waiters = [];
  const sub = client.newSubscription(CHANNEL);
  let subscribed = null;
  sub.on('subscribed', (ctx) => { subscribed = ctx; });
  sub.on('publication', (ctx) => {
    publications.push(ctx);
    for (const w of waiters.splice(0)) w();
  });
  const nextPublication = (predicate) => new Promise((resolve) => {
    const check = () => {
      const found = publications.find(predicate);
      if (found) resolve(found); else waiters.push(check);
    };
    check();
  });
  client.connect();
  sub.subscribe();
  await deadline(sub.ready(), 'subscribe');
  return { client, sub, publications, nextPublication, subscribed: () => subscribed };
}

const result = {};
try {
  const user = await open(TOKEN);
  const anon = await open('');
  result.history = user.publications.map((p) => p.data.text);
  result.subscribed = { recoverable: user.subscribed().recoverable, epoch: user.subscribed().streamPosition?.epoch };
  await deadline(user.sub.publish({ text: TEXT }), 'publish');
  const own = await deadline(user.nextPublication((p) => p.data.text === TEXT), 'own message');
  const seen = await deadline(anon.nextPublication((p) => p.data.text === TEXT), 'anonymous sees it');
  result.own = own.data;
  result.ownOffset = own.offset;
  result.anonSaw = seen.data.text;
  try {
    await anon.sub.publish({ text: 'anonymous' });
    result.anonPublish = 'accepted';
  } catch (err) {
    result.anonPublish = { code: err.code, message: err.message };
  }
  const history = await deadline(user.sub.history({ limit: 5, reverse: true }), 'history');
  result.historyNewest = history.publications[0]?.data.text;
  const stats = await deadline(user.sub.presenceStats(), 'presence stats');
  result.presence = { clients: stats.numClients, users: stats.numUsers };
  user.client.disconnect();
  anon.client.disconnect();
  result.ok = true;
} catch (err) {
  result.ok = false;
  result.error = String(err?.stack || err?.message || JSON.stringify(err));
}
console.log(JSON.stringify(result));
process.exit(0);
