// Small helpers the console's modules share: building DOM, what is on screen, coalesced refreshes.

/** A DOM element; children are nodes or text (never parsed as HTML). */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else el[key] = value;
  }
  el.append(...children.filter((c) => c !== null && c !== undefined));
  return el;
}

// Ids are long and their ends differ most (a sequence then random digits): show the tail.
export const short = (id) => (id && id.length > 12 ? `…${id.slice(-10)}` : id || '');

/** The rows of `trs` that the user can see inside `scroller` (and the window). */
export function onScreen(scroller, trs) {
  const box = scroller.getBoundingClientRect();
  const top = Math.max(box.top, 0);
  const bottom = Math.min(box.bottom, window.innerHeight);
  return trs.filter((tr) => {
    const r = tr.getBoundingClientRect();
    return r.height > 0 && r.bottom > top && r.top < bottom;
  });
}

/**
 * `task` run soon: one run at a time, at most one per `gap` ms; calls meanwhile fold into one run.
 * What it throws goes to `onError`.
 */
export function coalesced(task, gap, onError) {
  let running = false;
  let again = false;
  let timer = null;
  let last = -Infinity;
  const run = async () => {
    timer = null;
    running = true;
    last = Date.now();
    try {
      await task();
    } catch (err) {
      onError(err);
    } finally {
      running = false;
      if (again) {
        again = false;
        schedule();
      }
    }
  };
  function schedule() {
    if (running) again = true;
    else if (!timer) timer = setTimeout(run, Math.max(0, last + gap - Date.now()));
  }
  return schedule;
}
