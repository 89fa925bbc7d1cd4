package store

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Backup writes a consistent copy of the whole ledger to w while writes go
// on. The copy is compacted (bbolt Compact, in one read transaction, into a
// temporary file beside the ledger that is removed afterwards): it holds
// the live data only, never the free pages, so data erased before the
// backup is not in it. The copy opens as a ledger with Open.
func (s *Store) Backup(w io.Writer) (int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(s.path), ".assent-backup-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	tmp.Close()
	if err := s.compactTo(tmp.Name()); err != nil {
		return 0, err
	}
	// The copy's own WriteTo sends its pages up to its high-water mark,
	// not the room bbolt grew the file by.
	db, err := bolt.Open(tmp.Name(), 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int64
	err = db.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// compactTo writes a compacted copy of the ledger to path (which may exist
// empty) and syncs it.
func (s *Store) compactTo(path string) error {
	os.Remove(path) // bbolt makes its own file
	dst, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return err
	}
	err = guard(func() error { return bolt.Compact(dst, s.db, 1<<20) })
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	return err
}

// Compact rewrites the ledger at path (which no process may hold) without
// its free pages: bbolt keeps the old versions of changed pages, an
// erased person's address among them, in free pages until they are reused;
// a compacted file holds only live data. The copy is written beside the
// file, synced, checked and renamed over it. It returns the sizes before
// and after.
func Compact(path string) (before, after int64, err error) {
	s, err := Open(path, Options{})
	if err != nil {
		return 0, 0, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		s.Close()
		return 0, 0, err
	}
	before = fi.Size()
	tmp := path + ".compact"
	err = s.compactTo(tmp)
	if err == nil {
		var c *Store
		if c, err = Open(tmp, Options{ReadOnly: true}); err == nil {
			var rep VerifyReport
			rep, err = c.Verify()
			c.Close()
			if err == nil && !rep.OK {
				err = fmt.Errorf("compacted copy does not verify: %s", rep.Reason)
			}
		}
	}
	s.Close() // releases the lock; the rename follows at once
	if err != nil {
		os.Remove(tmp)
		return before, 0, fmt.Errorf("compact %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return before, 0, err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	if fi, err = os.Stat(path); err != nil {
		return before, 0, err
	}
	return before, fi.Size(), nil
}

// Counts returns each site's number of records (its chain length,
// tombstones included), for metrics.
func (s *Store) Counts() (map[string]int, error) {
	counts := map[string]int{}
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketChains).ForEach(func(k, v []byte) error {
			h, err := decodeHead(v)
			if err != nil {
				return fmt.Errorf("%w: chain head of %q: %v", ErrCorrupt, k, err)
			}
			counts[string(k)] = int(h.count)
			return nil
		})
	})
	return counts, err
}

// purgeChunk is how many records one purge transaction turns into
// tombstones.
const purgeChunk = 2048

// Purge applies each site's retention_days: every record recorded before
// now minus that many days becomes a tombstone keeping only its id, time,
// prev_hash and hash, so the chain still verifies, and leaves the subject
// index. Each batch of a site's purge (up to purgeChunk records) writes
// its "purge" audit entry in its own transaction. It returns the number of records purged.
//
// Retention counts from when a record was made: a consent older than the
// retention period goes too, even if the person still relies on it, so a
// site's retention_days should be longer than the consents it needs to prove.
func (s *Store) Purge(now time.Time) (int, error) {
	sites, err := s.Sites()
	if err != nil {
		return 0, err
	}
	total := 0
	for _, site := range sites {
		if site.RetentionDays <= 0 {
			continue
		}
		cutoff := now.Add(-time.Duration(site.RetentionDays) * 24 * time.Hour)
		n, err := s.purgeSite(site.ID, idFloor(cutoff), cutoff)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// purgeSite tombstones the site's records with ids below end, a chunk per
// transaction.
func (s *Store) purgeSite(site string, end []byte, cutoff time.Time) (int, error) {
	total := 0
	var next []byte
	for {
		n, more := 0, false
		err := s.update(func(tx *bolt.Tx) error {
			b := siteRecords(site)(tx)
			if b == nil {
				return nil
			}
			b.FillPercent = appendFill
			var todo []*storedRecord
			c := b.Cursor()
			k, v := c.First()
			if next != nil {
				k, v = c.Seek(next)
			}
			for ; k != nil && bytes.Compare(k, end) < 0; k, v = c.Next() {
				if len(todo) == purgeChunk {
					next, more = bytes.Clone(k), true
					break
				}
				r, err := decodeRecord(site, k, v)
				if err != nil {
					return fmt.Errorf("%w: record %s of site %s: %v", ErrCorrupt, formatID(k), site, err)
				}
				if !r.Tombstone {
					todo = append(todo, r)
				}
			}
			// Change the bucket only after the cursor is done with it.
			subjects, visitors := tx.Bucket(bucketSubjects), tx.Bucket(bucketVisitors)
			for _, r := range todo {
				id, _ := parseID(r.ID)
				if r.digests.email != nil {
					if err := subjects.Delete(subjectKey(r.digests.email, id)); err != nil {
						return err
					}
				}
				if r.digests.newEmail != nil {
					if err := subjects.Delete(subjectKey(r.digests.newEmail, id)); err != nil {
						return err
					}
				}
				if r.digests.visitorID != nil {
					if err := visitors.Delete(subjectKey(r.digests.visitorID, id)); err != nil {
						return err
					}
				}
				tomb := &storedRecord{Record: Record{Tombstone: true}, prevHash: r.prevHash, hash: r.hash}
				if err := b.Put(id, encodeRecord(tomb)); err != nil {
					return err
				}
			}
			n = len(todo)
			if n == 0 {
				return nil
			}
			// Each batch and its audit entry commit together: a purge
			// stopped midway leaves no tombstones without an entry.
			detail := fmt.Sprintf("site=%s records=%d before=%s", site, n, cutoff.UTC().Format(time.RFC3339))
			return putAudit(tx, s.now(), systemActor, "purge", detail)
		})
		if err != nil {
			return total, err
		}
		total += n
		if !more {
			return total, nil
		}
	}
}

// RunRetention purges now and then every interval (an hour when every is not
// positive) until ctx is done. It logs counts only, never personal data.
func (s *Store) RunRetention(ctx context.Context, every time.Duration, log *slog.Logger) {
	if every <= 0 {
		every = time.Hour
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n, err := s.Purge(s.now())
		switch {
		case err != nil:
			log.Error("retention purge failed", "err", err)
		case n > 0:
			log.Info("retention purge", "records", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
