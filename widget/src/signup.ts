// The email signup popup: email, optional name, the signup purposes (opt-in:
// unticked, the required ones must be ticked; notice: ticked, the required ones
// fixed), a honeypot field that people never see, and the server's answer.
import { call } from './api'
import { receiptButtons, dialog, read, row } from './banner'
import { SP, GPC } from './config'
import { D, optIn, tt } from './decision'
import { h } from './dom'
import { M, save } from './prefs'

const st = (k: string) => tt('signup', k)

// The signup texts that explain the server's error codes.
const errorText: Record<string, string> = {
  invalid_email: 'error_invalid_email',
  rate_limited: 'error_rate_limited',
  consent_required: 'required_hint',
  suppressed: 'error_suppressed',
}

export const signupView = () => {
  const opt = optIn()
  return dialog(
    st('title'),
    'modal',
    h(
      'form',
      0,
      h('p', 0, st('description')),
      h('label', { class: 'f' }, st('email'), h('input', { type: 'email', name: 'email', required: true, autocomplete: 'email', maxlength: 254 })),
      h('label', { class: 'f' }, st('name'), h('input', { name: 'name', autocomplete: 'name', maxlength: 200 })),
      h('div', { class: 'hp', 'aria-hidden': 'true' }, h('input', { name: 'website', tabindex: -1, autocomplete: 'off', 'aria-label': 'website' })),
      SP.map(p => row(p, !opt, !opt && p.required_for_signup, true, opt && p.required_for_signup && st('required'))),
      h('p', { class: 'er', role: 'alert' }),
      h('div', { class: 'bs' }, h('button', { type: 'submit', class: 'b', 'data-assent-action': 'submit' }, st('submit'))),
    ),
  )
}

// The fields every write carries.
export const body = (choices: object, source: string, more?: object) =>
  Object.assign(
    { visitor_id: M.vid, choices, notice_version: D.policy_version, locale: D.locale, page_url: location.href.slice(0, 2048), source, gpc: GPC },
    more,
  )

export const submit = (f: HTMLFormElement) => {
  const er = f.querySelector('.er')!,
    b = f.querySelector('[type=submit]') as HTMLButtonElement,
    v = (n: string) => (f.querySelector('[name=' + n + ']') as HTMLInputElement).value,
    ch = read(f)
  if (optIn() && SP.some(p => p.required_for_signup && !ch[p.id])) return (er.textContent = st('required_hint'))
  b.disabled = true
  call('/signups', body(ch, 'signup', { email: v('email'), name: v('name'), website: v('website') }))
    .then(([s, j]) => {
      if (s != 201) throw (j.error && j.error.code) || s
      M.su = 2
      save()
      f.textContent = ''
      f.append(h('p', { role: 'status' }, st(j.double_opt_in == 'pending' ? 'pending' : 'success')), ...receiptButtons(j.id, j.receipt))
      ;(f.parentNode as HTMLElement).focus()
    })
    .catch(code => {
      // The visitor reads their own language, never the server's English.
      er.textContent = (typeof code == 'string' && st(errorText[code] || '')) || tt('error')
      b.disabled = false
    })
}
