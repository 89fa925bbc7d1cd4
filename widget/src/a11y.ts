// Showing and closing a dialog: focus goes in when it appears (so the shadow
// host becomes document.activeElement), stays in while it is modal, and goes
// back where it was when it closes.
import { box, host, root } from './dom'

// The view on screen (a dialog, or the modal backdrop holding one).
export let cur: HTMLElement | 0 = 0
// Where focus was before: an element, or 1 for our own settings control.
let ret: Element | 1 | null = null

export const dialogOf = (n: HTMLElement) => n.querySelector('[role=dialog]') as HTMLElement || n

export const show = (n: HTMLElement) => {
  if (!cur) ret = document.activeElement == host ? 1 : document.activeElement
  box.textContent = '' // the settings control hides while a dialog is open
  box.append((cur = n))
  dialogOf(n).focus()
}

// close removes the view; then() may show another (which takes the focus),
// else focus returns to where it was, or to the settings control.
export const close = (then: () => void) => {
  if (cur) cur.remove()
  cur = 0
  then()
  if (!cur) {
    const r = ret == 1 ? box.querySelector('button') : ret
    r && (r as HTMLElement).focus && (r as HTMLElement).focus()
  }
}

const modal = () => cur && cur.className == 'bg'

const focusables = () =>
  Array.from((cur as HTMLElement).querySelectorAll<HTMLElement>('button,input,[tabindex="0"]')).filter(
    e => !(e as HTMLInputElement).disabled && e.tabIndex >= 0,
  )

export const keys = (onEscape: () => void) => {
  root.addEventListener('keydown', e => {
    const k = e as KeyboardEvent
    if (!cur) return
    if (k.key == 'Escape') {
      k.preventDefault()
      onEscape()
    } else if (k.key == 'Tab' && modal()) {
      const f = focusables(),
        a = root.activeElement,
        first = f[0],
        last = f[f.length - 1]
      if (k.shiftKey ? a == first || a == dialogOf(cur) : a == last) {
        k.preventDefault()
        ;(k.shiftKey ? last : first).focus()
      }
    }
  })
  // A click on the backdrop or the page must not let focus out of a modal.
  document.addEventListener('focusin', e => {
    if (modal() && e.target != host) dialogOf(cur as HTMLElement).focus()
  })
}
