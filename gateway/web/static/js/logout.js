import { clearSession } from './session.js';

clearSession();
document.getElementById('logout-status').textContent = 'You are logged out.';
location.replace('/');
