// The shadow root and the tiny element builder every view uses.
import { theme } from './config'
export { theme }

declare const __ASSENT_CSS__: string

type Kid = Node | string | false | null | undefined | 0 | Kid[]

// h('button', {type: 'button'}, 'OK'): attributes that are false, null or
// undefined are left out, true becomes an empty attribute.
export const h = (tag: string, attrs?: Record<string, unknown> | 0, ...kids: Kid[]): HTMLElement => {
  const e = document.createElement(tag)
  for (const k in attrs || {}) {
    const v = (attrs as Record<string, unknown>)[k]
    if (v != null && v !== false) e.setAttribute(k, v === true ? '' : '' + v)
  }
  const add = (k: Kid): void => {
    k instanceof Array ? k.forEach(add) : k && e.append(k)
  }
  add(kids)
  return e
}

// Every button's behaviour is its data-assent-action, read by one listener.
export const btn = (act: string, text: string, cls = 'b', data?: Record<string, unknown>) =>
  h('button', Object.assign({ type: 'button', class: cls, 'data-assent-action': act }, data), text)

export let host: HTMLElement
export let root: ShadowRoot
export let box: HTMLElement

const CSS: string = __ASSENT_CSS__ // once in the bundle
let css: CSSStyleSheet | undefined

// sheet gives a shadow root the widget's styles: one constructed style
// sheet shared by every root. It is not an inline <style>, so a CSP without
// 'unsafe-inline' lets it through.
export const sheet = (r: ShadowRoot) => {
  try {
    if (!css) (css = new CSSStyleSheet()), css.replaceSync(CSS)
    r.adoptedStyleSheets = [css]
  } catch (e) {
    r.append(h('style', 0, CSS))
  }
}

export const mount = () => {
  host = h('div', { id: 'assent' })
  // Inline and important, so that page rules such as `div {margin: 1em}` do
  // not reach the host; set through the CSSOM, which a strict CSP allows.
  host.style.cssText = 'all:initial!important'
  if (theme.brand) host.style.setProperty('--assent-brand', theme.brand)
  if (theme.radius) host.style.setProperty('--assent-radius', theme.radius)
  root = host.attachShadow({ mode: 'open' })
  sheet(root)
  root.append((box = h('div', { class: 'w ' + (theme.scheme || 'auto') })))
  document.body.append(host)
}
