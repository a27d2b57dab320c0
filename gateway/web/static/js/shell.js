// Every page: the theme toggle and the account links in the top bar.
import { currentUser } from './session.js';

const THEME_KEY = 'videopick.theme';

function systemTheme() {
  return window.matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
}

function applyTheme(theme) {
  if (theme === 'light' || theme === 'dark') document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
  const button = document.getElementById('theme-toggle');
  if (button) {
    const now = theme || systemTheme();
    const next = now === 'dark' ? 'light' : 'dark';
    button.setAttribute('aria-label', `Switch to the ${next} theme`);
    button.title = `Switch to the ${next} theme`;
  }
}

function setupTheme() {
  applyTheme(localStorage.getItem(THEME_KEY));
  document.getElementById('theme-toggle')?.addEventListener('click', () => {
    const now = document.documentElement.dataset.theme || systemTheme();
    const next = now === 'dark' ? 'light' : 'dark';
    localStorage.setItem(THEME_KEY, next);
    applyTheme(next);
  });
}

function setupAccount() {
  const user = currentUser();
  const who = document.getElementById('who');
  const show = (id, visible) => {
    const el = document.getElementById(id);
    if (el) el.hidden = !visible;
  };
  show('nav-login', !user);
  show('nav-register', !user);
  show('nav-logout', Boolean(user));
  if (who) {
    who.hidden = !user;
    who.textContent = user ? user.username : '';
  }
}

setupTheme();
setupAccount();
