// Operations: verify the ledger, download a backup, API tokens and console
// users (admins), and one's own password (console users).
import { download, getJSON, request, sendJSON, session } from './api'
import { $, facts, h, say, table, time } from './dom'
import { errorText, isAdmin } from './state'

interface VerifyReport {
  ok: boolean
  records: number
  sites?: Record<string, { records: number; head: string }>
  id?: string
  site?: string
}

interface TokenRow {
  name: string
  role: string
  created_at: string
}

interface UserRow {
  email: string
  role: string
  created_at: string
}

async function verify() {
  const msg = $('verify-msg')
  const b = $<HTMLButtonElement>('verify')
  say(msg, 'Verifying every chain…')
  b.disabled = true
  try {
    const r = await getJSON<VerifyReport>('/v1/admin/verify')
    const sites = r.sites || {}
    facts($('verify-facts'), [
      ['Result', r.ok ? 'intact' : 'DAMAGED'],
      ['Records checked', String(r.records)],
      ...(r.ok ? [] : ([['First bad record', (r.id || '') + ' in site ' + (r.site || '')]] as [string, string][])),
      ...Object.keys(sites).map((id): [string, string] => ['Site ' + id, sites[id].records + ' records, chain head ' + sites[id].head]),
    ])
    say(msg, r.ok ? `The ledger is intact: ${r.records} records verified.` : 'The ledger does not verify: see the first bad record below.', r.ok ? 'ok' : 'error')
  } catch (e) {
    say(msg, errorText(e), 'error')
  } finally {
    b.disabled = false
  }
}

async function backup() {
  const msg = $('backup-msg')
  say(msg, 'Taking the copy…')
  try {
    say(msg, 'Downloaded ' + (await download('/v1/admin/backup', 'assent-backup.db')) + '.', 'ok')
  } catch (e) {
    say(msg, errorText(e), 'error')
  }
}

async function loadTokens() {
  const msg = $('tokens-msg')
  try {
    const list = await getJSON<TokenRow[]>('/v1/admin/tokens')
    table(
      $<HTMLTableElement>('tokens-table'),
      ['Name', 'Role', 'Created (UTC)', 'Revoke'],
      list.map(t => {
        const b = h('button', { type: 'button', class: 'quiet', 'aria-label': 'Revoke token ' + t.name }, 'Revoke')
        b.addEventListener('click', async () => {
          if (!confirm('Revoke the token ' + t.name + '? Whatever uses it stops working.')) return
          try {
            await request('DELETE', '/v1/admin/tokens/' + encodeURIComponent(t.name))
            say(msg, 'Revoked ' + t.name + '.', 'ok')
            loadTokens()
          } catch (e) {
            say(msg, errorText(e), 'error')
          }
        })
        return [t.name, t.role, time(t.created_at), b]
      }),
    )
  } catch (e) {
    say(msg, errorText(e), 'error')
  }
}

async function loadUsers() {
  const msg = $('users-msg')
  try {
    const list = await getJSON<UserRow[]>('/v1/admin/users')
    table(
      $<HTMLTableElement>('users-table'),
      ['Email', 'Role', 'Created (UTC)', 'Delete'],
      list.map(u => {
        const b = h('button', { type: 'button', class: 'quiet', 'aria-label': 'Delete user ' + u.email }, 'Delete')
        b.addEventListener('click', async () => {
          if (!confirm('Delete the console user ' + u.email + '?')) return
          try {
            await request('DELETE', '/v1/admin/users/' + encodeURIComponent(u.email))
            say(msg, 'Deleted ' + u.email + '.', 'ok')
            loadUsers()
          } catch (e) {
            say(msg, errorText(e), 'error')
          }
        })
        return [u.email, u.role, time(u.created_at), b]
      }),
    )
  } catch (e) {
    say(msg, errorText(e), 'error')
  }
}

export function init() {
  $('verify').addEventListener('click', verify)
  $('backup').addEventListener('click', backup)
  $('token-create').addEventListener('submit', async e => {
    e.preventDefault()
    const msg = $('tokens-msg')
    const name = $<HTMLInputElement>('tk-name').value.trim()
    const role = $<HTMLSelectElement>('tk-role').value
    try {
      const t = await sendJSON<{ name: string; token: string }>('POST', '/v1/admin/tokens', { name, role })
      $('token-new').hidden = false
      $<HTMLInputElement>('token-value').value = t.token
      $<HTMLInputElement>('tk-name').value = ''
      say(msg, `Created the ${role} token ${t.name}. Copy it now: it is not shown again.`, 'ok')
      loadTokens()
    } catch (e) {
      say(msg, 'Not created: ' + errorText(e), 'error')
    }
  })
  $('user-create').addEventListener('submit', async e => {
    e.preventDefault()
    const msg = $('users-msg')
    const email = $<HTMLInputElement>('u-email').value.trim()
    try {
      await sendJSON('POST', '/v1/admin/users', { email, role: $<HTMLSelectElement>('u-role').value, password: $<HTMLInputElement>('u-password').value })
      $<HTMLInputElement>('u-password').value = ''
      $<HTMLInputElement>('u-email').value = ''
      say(msg, 'Created ' + email + '.', 'ok')
      loadUsers()
    } catch (e) {
      say(msg, 'Not created: ' + errorText(e), 'error')
    }
  })
  $('password-form').addEventListener('submit', async e => {
    e.preventDefault()
    const msg = $('password-msg')
    try {
      const r = await sendJSON<{ csrf: string }>('POST', '/admin/password', { current: $<HTMLInputElement>('pw-current').value, new: $<HTMLInputElement>('pw-new').value })
      session.csrf = r.csrf
      $<HTMLInputElement>('pw-current').value = ''
      $<HTMLInputElement>('pw-new').value = ''
      say(msg, 'Password changed. Other browsers signed in as you are signed out.', 'ok')
    } catch (e) {
      say(msg, 'Not changed: ' + errorText(e), 'error')
    }
  })
}

export function show() {
  $('token-new').hidden = true
  if (isAdmin()) {
    loadTokens()
    loadUsers()
  }
}
