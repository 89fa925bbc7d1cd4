// The Assent admin console: the entry point. It asks for the admin token,
// then shows one section at a time, picked by the address's #fragment so
// the browser's back button and links work.
import { getJSON, onUnauthorized, token } from './api'
import { $, say } from './dom'
import { choose, errorText, loadSites, state } from './state'
import * as log from './log'
import * as charts from './charts'
import * as subjects from './subjects'
import * as sites from './sites'
import * as audit from './audit'
import * as mail from './mail'
import * as webhooks from './webhooks'
import { Site } from './types'

const sections: Record<string, { init: () => void; show: () => void }> = { log, charts, subjects, sites, audit, mail, webhooks }
const first = 'log'

function signedIn(on: boolean) {
  $('login').hidden = on
  $('nav').hidden = !on
  $('session').hidden = !on
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

async function start(fromForm: boolean) {
  const msg = $('login-msg')
  try {
    await getJSON<Site[]>('/v1/admin/sites')
  } catch (e) {
    token.clear()
    signedIn(false)
    say(msg, fromForm ? errorText(e) : '', 'error')
    $('token').focus()
    return
  }
  say(msg, '')
  signedIn(true)
  await loadSites()
  route()
  if (fromForm) $('main').focus()
}

function init() {
  onUnauthorized(message => {
    token.clear()
    signedIn(false)
    say($('login-msg'), 'Signed out: ' + message, 'error')
  })
  $('login-form').addEventListener('submit', e => {
    e.preventDefault()
    const input = $<HTMLInputElement>('token')
    token.set(input.value)
    input.value = ''
    start(true)
  })
  $('signout').addEventListener('click', () => {
    token.clear()
    signedIn(false)
    say($('login-msg'), 'Signed out.', 'ok')
    $('token').focus()
  })
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
  if (token.get()) start(false)
  else signedIn(false)
}

init()
