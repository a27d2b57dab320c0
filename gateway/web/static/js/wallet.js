// The signed-in user's credits beside the chat: the balance, and a top-up button where
// the gateway allows one (env=dev or an admin: `can_topup`). Super chats spend from it.
import { api, currentUser } from './session.js';

const TOPUP_CREDITS = 500;

export function startWallet({ box, balance, topup, status }) {
  if (!currentUser()) return { refresh: async () => {} };

  const show = (wallet) => {
    balance.textContent = String(wallet.balance ?? 0);
    topup.hidden = !wallet.can_topup;
    box.hidden = false;
  };

  const refresh = async () => {
    try {
      show(await api('/api/v2/wallet?limit=1'));
    } catch (err) {
      status.textContent = `Wallet: ${err?.message || 'not available'}`;
    }
  };

  topup.addEventListener('click', async () => {
    topup.disabled = true;
    try {
      const out = await api('/api/v2/wallet/topup', {
        method: 'POST',
        body: { amount: TOPUP_CREDITS, note: 'web client' },
      });
      // 202: recorded, not applied yet; the next refresh shows it.
      if (out.balance !== null && out.balance !== undefined) balance.textContent = String(out.balance);
      else await refresh();
      status.textContent = `+${TOPUP_CREDITS} credits`;
    } catch (err) {
      status.textContent = `Top-up refused: ${err?.message || 'error'}`;
    } finally {
      topup.disabled = false;
    }
  });

  refresh();
  return { refresh };
}
