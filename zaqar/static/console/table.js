// The selected queue's messages on screen, kept in step with the server and its clock.

import { h, onScreen, short } from './dom.js';

const MAX_ROWS = 500; // messages kept on screen

// Bidirectional controls in a body would reorder the text around them on screen: show them escaped.
const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const escaped = (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
const showJson = (value, indent) => String(JSON.stringify(value, null, indent)).replace(BIDI, escaped);

function toggleBody(cell, body) {
  const expanded = cell.classList.toggle('expanded');
  cell.setAttribute('aria-expanded', String(expanded));
  cell.firstChild.textContent = expanded ? showJson(body, 2) : showJson(body);
}

/** A body cell: one line, cut to fit; a click (or Enter) shows the whole body, pretty-printed. */
function bodyCell(body) {
  const cell = h(
    'td',
    { className: 'body', tabIndex: 0, dir: 'ltr', title: 'Click to show the whole body' },
    h('div', { className: 'body-text' }, showJson(body)),
  );
  cell.setAttribute('role', 'button');
  cell.setAttribute('aria-expanded', 'false');
  cell.addEventListener('click', () => toggleBody(cell, body));
  cell.addEventListener('keydown', (e) => {
    if (e.key !== 'Enter' && e.key !== ' ') return;
    e.preventDefault();
    toggleBody(cell, body);
  });
  return cell;
}

/**
 * The message rows of one queue, with the claims this page made.
 *
 * Each row knows when its message and its claim run out (`expire()` shows it
 * on time), and `reconcile()` asks the server about the rows on screen, so
 * messages deleted, claimed, released or expired elsewhere show as such.
 * `actions` are the buttons' handlers: `remove(id)`, `removeClaimed(claimId)`,
 * `release(claimId)`.
 */
export class MessageTable {
  constructor({ tbody, scroller, claimsBox, empty }, actions) {
    Object.assign(this, { tbody, scroller, claimsBox, empty, actions });
    this.reset();
  }

  reset() {
    this.rows = new Map(); // message id -> {tr, message, claimId, claimExpires, expires, gone}
    this.claims = new Map(); // claim id (ours) -> {ids, expires}
    this.claimEnds = new Map(); // claim id (anyone's) -> {expires, final}: what claim_get said
    this.arrived = []; // rows not in the table yet
    this.seq = 0;
    this.shownClaims = '';
    this.tbody.replaceChildren();
    this.claimsBox.replaceChildren();
    this.empty.hidden = false;
  }

  get(id) {
    return this.rows.get(id);
  }

  add(message) {
    if (this.rows.has(message.id)) return;
    this.seq += 1;
    const posted = new Date(Date.now() - message.age * 1000);
    const remove = h(
      'button',
      { type: 'button', className: 'small danger', onclick: () => this.actions.remove(message.id) },
      'Delete',
    );
    const tr = h(
      'tr',
      { className: 'new', dataset: { id: message.id } },
      h('td', { className: 'num' }, String(this.seq)),
      h('td', { className: 'id', title: message.id }, short(message.id)),
      h('td', { className: 'time' }, posted.toLocaleTimeString()),
      bodyCell(message.body),
      h('td', { className: 'state' }, h('span', { className: 'badge' }, 'free')),
      h('td', { className: 'actions' }, remove),
    );
    const expires = Date.now() + (message.ttl - message.age) * 1000;
    this.rows.set(message.id, { tr, message, claimId: null, claimExpires: null, expires, gone: null });
    this.setClaim(message.id, message.claim_id);
    this.arrived.push(tr);
    // PERF: one table update per frame: a layout per arriving row made 600 rows take ~10 s to show.
    if (this.arrived.length === 1) requestAnimationFrame(() => this._showArrived());
    if (this.arrived.length > MAX_ROWS) this._showArrived(); // a hidden tab has no frames
  }

  _showArrived() {
    if (this.arrived.length === 0) return;
    const { scroller, tbody } = this;
    const atBottom = scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - 8;
    tbody.append(...this.arrived.slice(-MAX_ROWS));
    for (const tr of this.arrived.slice(0, -MAX_ROWS)) this.rows.delete(tr.dataset.id);
    this.arrived = [];
    for (let extra = tbody.rows.length - MAX_ROWS; extra > 0; extra -= 1) {
      this.rows.delete(tbody.rows[0].dataset.id);
      tbody.rows[0].remove();
    }
    this.empty.hidden = true;
    if (atBottom) scroller.scrollTop = scroller.scrollHeight;
  }

  /** Show a message as claimed by `claimId` (null: free) until `expires` (ours: known; null: unknown). */
  setClaim(id, claimId, expires = this.claims.get(claimId)?.expires ?? null) {
    const row = this.rows.get(id);
    if (!row || row.gone) return;
    row.claimId = claimId || null;
    row.claimExpires = claimId ? expires : null;
    const badge = row.tr.querySelector('.badge');
    badge.className = claimId ? 'badge claimed' : 'badge';
    badge.textContent = claimId ? `claimed · ${short(claimId)}` : 'free';
  }

  /** Another client deleted the message, or it expired: say so, and offer no action on it. */
  markGone(id, why) {
    const row = this.rows.get(id);
    if (!row || row.gone) return;
    row.gone = why;
    row.tr.classList.add('gone');
    const badge = row.tr.querySelector('.badge');
    badge.className = 'badge gone';
    badge.textContent = why;
    row.tr.querySelector('.actions').replaceChildren();
    this._forget(id);
  }

  /** This page deleted the message: its row goes. */
  remove(id) {
    const row = this.rows.get(id);
    if (!row) return;
    row.tr.remove();
    this.rows.delete(id);
    this._forget(id);
  }

  _forget(id) {
    for (const claim of this.claims.values()) claim.ids.delete(id);
    this.renderClaims();
  }

  /** This page claimed `ids` with `claimId`, until `expires`. */
  claimed(claimId, ids, expires) {
    this.claims.set(claimId, { ids: new Set(ids), expires });
    for (const id of ids) this.setClaim(id, claimId);
    this.renderClaims();
  }

  /** The ids this page holds with its claim `claimId`. */
  claimIds(claimId) {
    return [...(this.claims.get(claimId)?.ids ?? [])];
  }

  released(claimId) {
    for (const id of this.claimIds(claimId)) this.setClaim(id, null);
    this.claims.delete(claimId);
    this.renderClaims();
  }

  /**
   * When claim `claimId` runs out: ours are known; another client's are asked once, and again when
   * due (it may have been renewed). Null when the server cannot say.
   */
  async _claimExpiry(client, queue, claimId) {
    if (this.claims.has(claimId)) return this.claims.get(claimId).expires;
    let known = this.claimEnds.get(claimId);
    if (!known || (!known.final && known.expires <= Date.now())) {
      try {
        const c = await client.getClaim(queue, claimId);
        known = { expires: Date.now() + (c.ttl - c.age) * 1000, final: false };
      } catch (err) {
        if (err.status !== 404) return null;
        known = { expires: -Infinity, final: true }; // ran out or released: for good
      }
      this.claimEnds.set(claimId, known);
    }
    return known.expires;
  }

  /**
   * Ask the server how the messages on screen are now: claimed, released, deleted or expired.
   *
   * `current()` says whether the answer still matters (same queue, same client).
   */
  async reconcile(client, queue, current) {
    const live = [...this.rows.values()].filter((row) => !row.gone).map((row) => row.tr);
    const ids = onScreen(this.scroller, live).map((tr) => tr.dataset.id);
    const size = client.options.pageSize;
    for (let i = 0; i < ids.length; i += size) {
      const batch = ids.slice(i, i + size);
      const found = await client.getMessages(queue, batch).catch(() => null);
      if (!found || !current()) return;
      const byId = new Map(found.map((m) => [m.id, m]));
      for (const id of batch) {
        if (!(await this._update(client, queue, id, byId.get(id))) || !current()) return;
      }
    }
    this.renderClaims();
  }

  /** One row as the server has it now (`m` undefined: gone). False when it stopped mattering. */
  async _update(client, queue, id, m) {
    const row = this.rows.get(id);
    if (!row) return true; // left the table meanwhile
    if (!m) {
      this.markGone(id, Date.now() >= row.expires - 2000 ? 'expired' : 'deleted');
      return true;
    }
    row.expires = Date.now() + (m.ttl - m.age) * 1000;
    // NOTE: a message goes on naming its claim after the claim ran out: ask when it does.
    const until = m.claim_id ? await this._claimExpiry(client, queue, m.claim_id) : null;
    const claimId = until !== null && until <= Date.now() ? null : m.claim_id;
    if (claimId !== row.claimId || (claimId && until !== row.claimExpires)) this.setClaim(id, claimId, until);
    return true;
  }

  /** Messages and claims run out on the server by the clock: show it when it happens. */
  expire() {
    const now = Date.now();
    for (const [id, row] of this.rows) {
      if (row.gone) continue;
      if (now >= row.expires) this.markGone(id, 'expired');
      else if (row.claimExpires !== null && now >= row.claimExpires) this.setClaim(id, null);
    }
    this.renderClaims();
  }

  renderClaims() {
    const now = Date.now();
    for (const [claimId, c] of this.claims) {
      for (const id of c.ids) {
        const row = this.rows.get(id);
        if (row && row.claimId !== claimId) c.ids.delete(id); // released, or claimed again elsewhere
      }
      if (c.ids.size === 0 || c.expires <= now) this.claims.delete(claimId);
    }
    // NOTE: rebuilt only when something changed, so a button is never replaced under the pointer.
    const key = JSON.stringify([...this.claims].map(([claimId, c]) => [claimId, c.ids.size]));
    if (key === this.shownClaims) return;
    this.shownClaims = key;
    this.claimsBox.replaceChildren(...[...this.claims].map(([claimId, c]) => this._card(claimId, c)));
  }

  _card(claimId, c) {
    const { removeClaimed, release } = this.actions;
    return h(
      'div',
      { className: 'claim', dataset: { claim: claimId } },
      h('span', {}, 'Claim ', h('code', { title: claimId }, short(claimId))),
      h(
        'span',
        { className: 'muted' },
        `${c.ids.size} message${c.ids.size === 1 ? '' : 's'}, ` +
          `until ${new Date(c.expires).toLocaleTimeString()}`,
      ),
      h('span', { className: 'spacer' }),
      h(
        'button',
        { type: 'button', className: 'small primary', onclick: () => removeClaimed(claimId) },
        'Delete claimed',
      ),
      h('button', { type: 'button', className: 'small', onclick: () => release(claimId) }, 'Release'),
    );
  }
}
