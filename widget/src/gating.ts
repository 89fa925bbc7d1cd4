// Script gating: <script type="text/plain" data-assent="analytics"> (inline or
// with src) and <iframe data-assent="marketing" data-src="…"> come alive only
// once their purpose is granted, one after another in document order: an
// inline script that follows an external one waits until that one has loaded.
// data-assent may name several purposes, separated by spaces; all must be granted.
let queue = Promise.resolve()

const wake = (el: HTMLElement) =>
  new Promise<void>(done => {
    if (el.tagName == 'IFRAME') {
      ;(el as HTMLIFrameElement).src = el.getAttribute('data-src')!
      return done()
    }
    const s = document.createElement('script')
    Array.from(el.attributes).forEach(a => a.name != 'type' && s.setAttribute(a.name, a.value))
    // data-type="module" keeps a script's real type.
    if (el.dataset.type) s.type = el.dataset.type
    s.text = (el as HTMLScriptElement).text
    s.onload = s.onerror = () => done()
    el.replaceWith(s)
    if (!s.src) done()
  })

let watching = 0

// gate wakes every gated element whose purposes are granted, and from its
// first call on watches the page, so elements a single-page app adds later
// are gated the same way.
export const gate = (granted: (id: string) => boolean): void => {
  watching++ ||
    new MutationObserver(() => gate(granted)).observe(document.documentElement, { childList: true, subtree: true })
  document.querySelectorAll<HTMLElement>('script[type="text/plain"][data-assent],iframe[data-assent][data-src]').forEach(el => {
    if (el.hasAttribute('data-assent-queued') || !el.getAttribute('data-assent')!.split(/\s+/).every(granted)) return
    el.setAttribute('data-assent-queued', '')
    queue = queue.then(() => wake(el))
  })
}
