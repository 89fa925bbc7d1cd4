// The Assent admin console: the entry point. It signs a person in (email
// and password, or an API token), then shows one section at a time, picked
// by the address's #fragment so the browser's back button and links work.
// What a viewer may not do is hidden for them; the server refuses it anyway.
import { getJSON, onUnauthorized, session, token, Who } from './api'
import { $, say } from './dom'
import { choose, errorText, loadSites, state } from './state'
import * as log from './log'
import * as charts from './charts'
import * as subjects from './subjects'
import * as sites from './sites'
import * as audit from './audit'
import * as ops from './ops'
import * as mail from './mail'
import * as origins from './origins'
import * as webhooks from './webhooks'

const sections: Record<string, { init: () => void; show: () => void }> = { log, charts, subjects, sites, audit, mail, ops, origins, webhooks }
const first = 'log'

function signedIn(who: Who | null) {
  const on = who !== null
  $('login').hidden = on
  $('nav').hidden = !on
  $('session').hidden = !on
  state.who = who
  session.csrf = who ? who.csrf : ''
  document.body.dataset.role = who ? who.role : ''
  for (const el of Array.from(document.querySelectorAll<HTMLElement>('.admin-only'))) el.hidden = !who || who.role !== 'admin'
  $('who').textContent = who ? `${who.name} (${who.role})` : ''
  $('password-part').hidden = !who || who.kind !== 'user'
  if (!on) for (const k of Object.keys(sections)) $(k).hidden = true
}

function route() {
  if ($('nav').hidden) return
  let name = location.hash.slice(1)
  if (!sections[name]) name = first
  for (const k of Object.keys(sections)) $(k).hidden = k !== name
  for (const a of Array.from(document.querySelectorAll<HTMLAnchorElement>('#nav a'))) {
    if (a.getAttribute('href') === '#' + name) a.setAttribute('aria-current', 'page')
    else a.removeAttribute('aria-current')
  }
  document.title = $(name).querySelector('h1')!.textContent + ' · Assent admin'
  sections[name].show()
}

// start asks the server who this browser is (cookie or token) and opens
// the console, or shows the sign-in form.
async function start(fromForm: boolean) {
  const msg = $('login-msg')
  let who: Who
  try {
    who = await getJSON<Who>('/v1/admin/whoami')
  } catch (e) {
    token.clear()
    signedIn(null)
    say(msg, fromForm ? errorText(e) : '', 'error')
    return
  }
  say(msg, '')
  signedIn(who)
  await loadSites()
  route()
  if (fromForm) $('main').focus()
}

async function signIn(form: HTMLFormElement) {
  const msg = $('login-msg')
  say(msg, 'Signing in…')
  token.clear()
  const body = new URLSearchParams()
  for (const [k, v] of new FormData(form)) body.append(k, String(v))
  let r: Response
  try {
    r = await fetch(form.action, { method: 'POST', body, credentials: 'same-origin', redirect: 'manual' })
  } catch (e) {
    say(msg, 'The server did not answer: ' + errorText(e), 'error')
    return
  }
  // 303 to /admin/ is success; the cookie is set, the redirect not followed.
  if (r.type === 'opaqueredirect' || r.ok) {
    $<HTMLInputElement>('l-password').value = ''
    start(true)
    return
  }
  let message = r.status + ' ' + r.statusText
  try {
    const j = await r.json()
    if (j && j.error) message = j.error.message
  } catch (e) {
    // not JSON: keep the status line
  }
  say(msg, message.charAt(0).toUpperCase() + message.slice(1) + '.', 'error')
  $('l-password').focus()
}

async function signOut() {
  if (!token.get() && state.who && state.who.kind === 'user') {
    try {
      await fetch('/admin/logout', { method: 'POST', headers: { 'X-CSRF-Token': session.csrf }, credentials: 'same-origin', redirect: 'manual' })
    } catch (e) {
      // signed out here either way
    }
  }
  token.clear()
  signedIn(null)
  say($('login-msg'), 'Signed out.', 'ok')
  $('l-email').focus()
}

function init() {
  onUnauthorized(message => {
    token.clear()
    signedIn(null)
    say($('login-msg'), 'Signed out: ' + message, 'error')
  })
  $('login-form').addEventListener('submit', e => {
    e.preventDefault()
    signIn(e.target as HTMLFormElement)
  })
  $('token-form').addEventListener('submit', e => {
    e.preventDefault()
    const input = $<HTMLInputElement>('token')
    token.set(input.value)
    input.value = ''
    start(true)
  })
  $('signout').addEventListener('click', signOut)
  $<HTMLSelectElement>('site').addEventListener('change', e => {
    const id = (e.target as HTMLSelectElement).value
    choose(state.sites.filter(s => s.id === id)[0] || null)
    route()
  })
  window.addEventListener('hashchange', () => {
    route()
    $('main').focus()
  })
  for (const k of Object.keys(sections)) sections[k].init()
  start(false)
}

init()
