// The signed-in session: the JWT (localStorage), and fetch() for the JSON API with it.
const TOKEN_KEY = 'videopick.token';
const USER_KEY = 'videopick.user';

function expired(jwt) {
  try {
    const payload = JSON.parse(atob(jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    return typeof payload.exp === 'number' && payload.exp * 1000 <= Date.now();
  } catch {
    return true;
  }
}

export function token() {
  const jwt = localStorage.getItem(TOKEN_KEY) || '';
  if (jwt && expired(jwt)) {
    clearSession();
    return '';
  }
  return jwt;
}

export function currentUser() {
  if (!token()) return null;
  try {
    return JSON.parse(localStorage.getItem(USER_KEY) || 'null');
  } catch {
    return null;
  }
}

export function saveSession(tokenOut) {
  localStorage.setItem(TOKEN_KEY, tokenOut.access_token);
  localStorage.setItem(USER_KEY, JSON.stringify(tokenOut.user));
}

export function clearSession() {
  localStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem(USER_KEY);
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// JSON in, JSON out; errors are the gateway's problem+json `detail`.
export async function api(path, { method = 'GET', body, auth = true } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const jwt = token();
  if (auth && jwt) headers.Authorization = `Bearer ${jwt}`;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = (data && (data.detail || data.title)) || response.statusText || 'request failed';
    throw new ApiError(response.status, message);
  }
  return data;
}

// Only same-site paths: `?next=//evil.example` must not send the user away.
export function safeNext(value, fallback) {
  return typeof value === 'string' && value.startsWith('/') && !value.startsWith('//') &&
    !value.startsWith('/\\') ? value : fallback;
}
