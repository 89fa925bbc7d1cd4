// The audit log: every admin action with its time, token name and detail,
// newest first, and its downloads.
import { download, jsonl, q } from './api'
import { $, say, table, time } from './dom'
import { errorText } from './state'
import { AuditEntry } from './types'

const shown = 1000

const period = () => ({
  from: ($('a-from') as HTMLInputElement).value,
  to: ($('a-to') as HTMLInputElement).value,
})

async function load() {
  const msg = $('audit-msg')
  say(msg, 'Loading…')
  try {
    const all = await jsonl<AuditEntry>('/v1/admin/audit?' + q({ ...period(), format: 'jsonl' }))
    const rows = all.slice(-shown).reverse()
    table($<HTMLTableElement>('audit-table'), ['At (UTC)', 'Token', 'Action', 'Detail'],
      rows.map(e => [time(e.at), e.token, e.action, e.detail]))
    say(msg, all.length > shown ? `The newest ${shown} of ${all.length} entries; download the log for all.` : `${all.length} entries.`)
  } catch (e) {
    say(msg, errorText(e), 'error')
  }
}

export function init() {
  $('audit-filters').addEventListener('submit', e => {
    e.preventDefault()
    load()
  })
  for (const b of Array.from(document.querySelectorAll<HTMLButtonElement>('[data-audit]'))) {
    b.addEventListener('click', async () => {
      const format = b.dataset.audit!
      const msg = $('audit-msg')
      try {
        say(msg, 'Downloaded ' + (await download('/v1/admin/audit?' + q({ ...period(), format }), 'assent-audit.' + format)) + '.', 'ok')
      } catch (e) {
        say(msg, errorText(e), 'error')
      }
    })
  }
}

export const show = load
