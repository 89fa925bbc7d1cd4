// The cookie banner's views: the first layer (opt-in: unticked checkboxes and
// three equal buttons; notice: a short notice with an opt-out), the settings,
// and the receipt.
import { BP, Choices, gpcDenied, Purpose, theme } from './config'
import { D, label, optIn, tt } from './decision'
import { btn, h } from './dom'
import { M } from './prefs'

// A dialog: labelled by its heading, with a × that counts as "Reject all"
// wherever there is no choice yet. Modal ones sit on a backdrop.
export const dialog = (title: string, pos: string, ...kids: (Node | false | 0 | undefined | '' | Node[])[]) => {
  const m = pos == 'modal'
  const d = h(
    'div',
    { role: 'dialog', 'aria-modal': m && 'true', 'aria-labelledby': 'at', tabindex: -1, class: 'd ' + pos, lang: D.locale },
    h('h2', { id: 'at' }, title),
    kids,
    btn('close', '×', 'x', { 'aria-label': tt('close') }),
  )
  return m ? h('div', { class: 'bg' }, d) : d
}

// One purpose: a checkbox row, or for required ones a line saying so.
export const row = (p: Purpose, on: boolean, off: boolean | undefined, more: boolean, note?: string | false) =>
  p.required
    ? h('div', { class: 'p n' }, h('span', 0, label(p.id), ' ', h('em', 0, tt('always_on')), more && h('small', 0, tt('purposes', p.id, 'description'))))
    : h(
        'label',
        { class: 'p' },
        h('input', { type: 'checkbox', 'data-assent-purpose': p.id, checked: on, disabled: off }),
        h('span', 0, label(p.id), note && ' ' + note, more && h('small', 0, tt('purposes', p.id, 'description')), off && gpcDenied(p) && h('small', 0, tt('gpc'))),
      )

export const read = (el: ParentNode) => {
  const o: Choices = {}
  el.querySelectorAll<HTMLInputElement>('[data-assent-purpose]').forEach(i => (o[i.getAttribute('data-assent-purpose')!] = i.checked))
  return o
}

const three = () =>
  h('div', { class: 'bs' }, btn('reject-all', tt('reject_all')), btn('save', tt('save')), btn('accept-all', tt('accept_all')))

const pos = () => theme.position || 'bar-bottom'

export const receiptButtons = (id?: string, jws?: string) =>
  jws ? [btn('receipt', tt('receipt', 'view'), 'l', { 'data-id': id, 'data-jws': jws }), btn('download', tt('receipt', 'download'), 'l', { 'data-id': id, 'data-jws': jws })] : []

export const firstLayer = () =>
  optIn()
    ? dialog(
        tt('title'),
        pos(),
        h('p', 0, tt('description')),
        h('div', { class: 'i' }, BP.map(p => row(p, false, gpcDenied(p), false))),
        three(),
        btn('settings', tt('settings'), 'l'),
      )
    : dialog(
        tt('title'),
        pos(),
        h('p', 0, tt('notice')),
        h('div', { class: 'bs' }, btn('reject-all', tt('optout')), btn('accept-all', tt('ok'))),
        btn('settings', tt('settings'), 'l'),
      )

// The settings show the choice in force; before any choice, opt-in boxes are
// unticked and notice-regime boxes ticked (an opt-out model).
export const settings = () =>
  dialog(
    tt('privacy_settings'),
    pos(),
    h('p', 0, tt('description')),
    BP.map(p => row(p, !gpcDenied(p) && (M.ch ? !!M.ch[p.id] : !optIn()), gpcDenied(p), true)),
    three(),
    M.ch && receiptButtons(M.id, M.rc),
  )

// The receipt's claims, decoded from the JWS payload (base64url JSON).
export const receipt = (d: DOMStringMap) => {
  let text = d.jws!
  try {
    const b = atob(text.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))
    text = JSON.stringify(JSON.parse(new TextDecoder().decode(Uint8Array.from(b, c => c.charCodeAt(0)))), null, 2)
  } catch (e) {}
  return dialog(
    tt('receipt', 'title'),
    pos(),
    h('pre', { tabindex: 0 }, text),
    h('div', { class: 'bs' }, btn('download', tt('receipt', 'download'), 'b', { 'data-id': d.id, 'data-jws': d.jws })),
  )
}

export const download = (d: DOMStringMap) =>
  (h('a', { href: URL.createObjectURL(new Blob([d.jws!], { type: 'application/jose' })), download: 'assent-receipt-' + d.id + '.jwt' }) as HTMLAnchorElement).click()
