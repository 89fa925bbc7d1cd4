package store

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// JournalName is the erasure journal's file name, beside the ledger file.
const JournalName = "erasures.journal"

// journalEntry is one line of the erasure journal: what re-applying an
// erasure to an older copy of the ledger needs, and nothing personal in
// clear: the keyed digests that go on the suppression list (addresses,
// visitor ids, hex) and the ids of the person's records.
type journalEntry struct {
	At       time.Time `json:"at"`
	Subjects []string  `json:"subjects"` // address digests
	Visitors []string  `json:"visitors"` // visitor id digests
	Records  []string  `json:"records"`  // record ids
}

func newJournalEntry(at time.Time, p *person) journalEntry {
	e := journalEntry{At: at, Subjects: []string{}, Visitors: []string{}, Records: []string{}}
	for _, d := range p.emails {
		e.Subjects = append(e.Subjects, hex.EncodeToString(d))
	}
	for _, d := range p.visitors {
		e.Visitors = append(e.Visitors, hex.EncodeToString(d))
	}
	for _, r := range p.records {
		e.Records = append(e.Records, formatID(r.id))
	}
	return e
}

func journalPath(ledger string) string { return filepath.Join(filepath.Dir(ledger), JournalName) }

// appendJournal appends e to the erasure journal and syncs it.
func (s *Store) appendJournal(e journalEntry) error {
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	s.journalMu.Lock()
	defer s.journalMu.Unlock()
	f, err := os.OpenFile(journalPath(s.path), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err = f.Write(append(line, '\n')); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// readJournal reads the erasure journal beside ledger; none is no entries.
// A last line cut short (a crash while appending, before the erasure was
// acknowledged) is ignored; any other bad line is an error.
func readJournal(ledger string) ([]journalEntry, error) {
	f, err := os.Open(journalPath(ledger))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []journalEntry
	r := bufio.NewReader(f)
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			return out, nil // a partial last line has no newline
		}
		if err != nil {
			return nil, err
		}
		var e journalEntry
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("%s line %d: %v", JournalName, n, err)
		}
		out = append(out, e)
	}
}

// RestoreReport says what a restore did.
type RestoreReport struct {
	Entries      int   `json:"journal_entries"`
	Reerased     int   `json:"records_reerased"`
	Suppressions int   `json:"suppressions_added"`
	Size         int64 `json:"size"`
}

// Restore puts the backup at file in place of the ledger at path (which no
// process may hold: ErrLocked) and re-applies every erasure of the erasure
// journal beside it: records of the journal that are not erased in the
// copy are erased again (with their person), and missing suppression
// entries are added; entries already applied change nothing. It writes a
// "restore" audit entry, then compacts the ledger so that no erased bytes
// remain in its free pages. A backup that does not open or verify leaves
// the ledger as it was.
func Restore(file, path string) (RestoreReport, error) {
	var rep RestoreReport
	if _, err := os.Stat(path); err == nil {
		s, err := Open(path, Options{ReadOnly: true}) // ErrLocked while a server holds it
		if err != nil {
			return rep, err
		}
		s.Close()
	}
	b, err := Open(file, Options{ReadOnly: true})
	if err != nil {
		return rep, fmt.Errorf("backup %s: %w", file, err)
	}
	v, err := b.Verify()
	b.Close()
	if err == nil && !v.OK {
		err = fmt.Errorf("%w: %s", ErrCorrupt, v.Reason)
	}
	if err != nil {
		return rep, fmt.Errorf("backup %s does not verify: %w", file, err)
	}
	entries, err := readJournal(path)
	if err != nil {
		return rep, err
	}
	rep.Entries = len(entries)
	if err := copyInPlace(file, path); err != nil {
		return rep, fmt.Errorf("restore %s: %w", path, err)
	}
	s, err := Open(path, Options{})
	if err != nil {
		return rep, err
	}
	err = guard(func() error {
		return s.update(func(tx *bolt.Tx) error {
			rep.Reerased, rep.Suppressions = 0, 0
			sup := tx.Bucket(bucketSuppression)
			for _, e := range entries {
				for _, id := range e.Records {
					raw, err := parseID(id)
					if err != nil {
						return fmt.Errorf("%s: record id %q: %v", JournalName, id, err)
					}
					r, err := findRecord(tx, raw)
					if err != nil {
						return err
					}
					if r == nil || r.rec.Erased {
						continue
					}
					erep, _, _, err := s.eraseTx(tx, systemActor, SubjectRef{RecordID: id}, EraseOptions{})
					if err != nil {
						return err
					}
					rep.Reerased += erep.Records
				}
				for _, h := range append(append([]string{}, e.Subjects...), e.Visitors...) {
					d, err := hex.DecodeString(h)
					if err != nil || len(d) == 0 {
						return fmt.Errorf("%s: bad digest %q", JournalName, h)
					}
					if sup.Get(d) != nil {
						continue
					}
					v, err := json.Marshal(suppression{At: e.At, Reason: "erasure request (Art. 17 GDPR)"})
					if err != nil {
						return err
					}
					if err := sup.Put(d, v); err != nil {
						return err
					}
					rep.Suppressions++
				}
			}
			detail := fmt.Sprintf("restored a backup: %d journal entries, %d records erased again, %d suppression entries added",
				rep.Entries, rep.Reerased, rep.Suppressions)
			return putAudit(tx, s.now(), systemActor, "restore", detail)
		})
	})
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return rep, err
	}
	_, rep.Size, err = Compact(path)
	return rep, err
}

// copyInPlace copies file over path atomically: a synced temporary file
// beside path, renamed over it, and the directory synced.
func copyInPlace(file, path string) error {
	src, err := os.Open(file)
	if err != nil {
		return err
	}
	defer src.Close()
	tmp := path + ".restore"
	dst, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(dst, src)
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
