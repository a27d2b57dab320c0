// Login and register forms: the token is kept in localStorage (session.js).
import { api, safeNext, saveSession } from './session.js';

const form = document.getElementById('auth-form');
const error = document.getElementById('auth-error');
const mode = form.dataset.mode;

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  error.hidden = true;
  const value = (name) => form.elements.namedItem(name)?.value ?? '';
  const body = mode === 'login'
    ? { login: value('login'), password: value('password') }
    : { username: value('username'), email: value('email'), password: value('password') };
  const button = document.getElementById('auth-submit');
  button.disabled = true;
  try {
    const out = await api(`/api/v2/auth/${mode}`, { method: 'POST', body, auth: false });
    saveSession(out);
    const next = new URLSearchParams(location.search).get('next');
    location.assign(safeNext(next, '/studio'));
  } catch (err) {
    error.textContent = err.message;
    error.hidden = false;
    button.disabled = false;
  }
});
