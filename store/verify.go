package store

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// VerifyReport is the result of walking every chain. When OK is false,
// BadSite and BadID name the first record that does not verify.
type VerifyReport struct {
	OK      bool                 `json:"ok"`
	Records int                  `json:"records"`
	Sites   map[string]ChainHead `json:"sites"`
	BadID   string               `json:"id,omitempty"`
	BadSite string               `json:"site,omitempty"`
	Reason  string               `json:"reason,omitempty"`
}

// ChainHead is one site's chain: its length (tombstones included) and the
// hash of its last record.
type ChainHead struct {
	Records int    `json:"records"`
	Head    string `json:"head"`
}

// Verify walks every site's chain in bounded read transactions and checks
// that each record decodes; that its prev_hash is the previous record's
// hash; that its hash is the SHA-256 of its canonical encoding; that the
// digests of its personal fields match the fields (or, once erased, that the
// fields are empty); that tombstones only precede live records; and that the
// chain ends at the head stored for the site with the stored count; then
// bbolt's consistency check of every page and bucket. A damaged
// ledger is reported, not an error: the error is for a failure to read.
// Records appended while Verify runs are not checked.
func (s *Store) Verify() (VerifyReport, error) {
	rep := VerifyReport{OK: true, Sites: map[string]ChainHead{}}
	heads := map[string]chainHead{}
	var sites []string
	err := guard(func() error {
		return s.view(func(tx *bolt.Tx) error {
			err := tx.Bucket(bucketChains).ForEach(func(k, v []byte) error {
				h, err := decodeHead(v)
				if err != nil {
					rep.fail(string(k), "", "chain head: "+err.Error())
					return nil
				}
				heads[string(k)] = h
				sites = append(sites, string(k))
				return nil
			})
			if err != nil {
				return err
			}
			return tx.Bucket(bucketRecords).ForEachBucket(func(k []byte) error {
				if _, ok := heads[string(k)]; !ok && tx.Bucket(bucketRecords).Bucket(k).Stats().KeyN > 0 {
					rep.fail(string(k), "", "records without a chain head")
				}
				return nil
			})
		})
	})
	if err != nil {
		return rep, err
	}
	slices.Sort(sites)
	for _, site := range sites {
		if !rep.OK {
			break
		}
		if err := s.verifyChain(site, heads[site], &rep); err != nil {
			return rep, err
		}
	}
	if !rep.OK {
		return rep, nil
	}
	// Then bbolt's own check of every page and bucket: page types, free
	// and reachable pages, key order. A damaged index page that no chain
	// walk reads is found here.
	err = s.view(func(tx *bolt.Tx) error {
		for cerr := range tx.Check() {
			rep.fail("", "", "file structure: "+cerr.Error())
		}
		return nil
	})
	if err != nil {
		rep.fail("", "", "file structure: "+err.Error())
	}
	return rep, nil
}

func (r *VerifyReport) fail(site, id, reason string) {
	if r.OK {
		r.OK, r.BadSite, r.BadID, r.Reason = false, site, id, reason
	}
}

// verifyChain checks one site's chain up to the head read at the start.
func (s *Store) verifyChain(site string, head chainHead, rep *VerifyReport) error {
	var prev []byte
	var n uint64
	live := false
	var lastID []byte
	err := scanChunks(s.db, siteRecords(site), nil, nil, func(k, v []byte) ([]byte, bool, error) {
		if !rep.OK || n >= head.count {
			return nil, false, nil
		}
		n++
		lastID = bytes.Clone(k)
		id := formatID(k)
		if id == "" {
			rep.fail(site, hex.EncodeToString(k), "key is not a record id")
			return nil, false, nil
		}
		r, err := decodeRecord(site, k, v)
		if err != nil {
			rep.fail(site, id, "cannot decode: "+err.Error())
			return nil, false, nil
		}
		if reason := s.checkRecord(r, prev, live); reason != "" {
			rep.fail(site, id, reason)
			return nil, false, nil
		}
		live = live || !r.Tombstone
		prev = r.hash
		return nil, false, nil
	}, func([]byte) error { return nil })
	if errors.Is(err, ErrCorrupt) {
		where := "at its start"
		if lastID != nil {
			where = "after record " + formatID(lastID)
		}
		rep.fail(site, "", fmt.Sprintf("cannot read the chain %s: %v", where, err))
		return nil
	}
	if err != nil {
		return err
	}
	if !rep.OK {
		return nil
	}
	switch {
	case n < head.count:
		rep.fail(site, formatID(head.last), fmt.Sprintf("chain has %d records, its head says %d: records are missing", n, head.count))
	case !bytes.Equal(prev, head.hash) || !bytes.Equal(lastID, head.last):
		rep.fail(site, formatID(lastID), "last record is not the stored chain head")
	default:
		rep.Records += int(n)
		rep.Sites[site] = ChainHead{Records: int(n), Head: hexOrEmpty(head.hash)}
	}
	return nil
}

// checkRecord returns why r does not verify after a record whose hash is
// prev, or "".
func (s *Keyring) checkRecord(r *storedRecord, prev []byte, afterLive bool) string {
	if !bytes.Equal(r.prevHash, prev) {
		return "prev_hash is not the previous record's hash"
	}
	if r.Tombstone {
		if afterLive {
			return "tombstone after a live record: retention only removes the oldest"
		}
		return ""
	}
	values := personalValues(&r.Record)
	for i, d := range r.digests.list() {
		switch {
		case r.Erased && values[i] != "":
			return "erased record still holds " + personal[i]
		case !r.Erased && !bytes.Equal(*d, s.digester.sum(nil, personal[i], values[i])):
			return personal[i] + " does not match its digest"
		}
	}
	switch {
	case r.Erased && r.NewEmail != "":
		return "erased record still holds new_email"
	case !r.Erased && r.digests.newEmail != nil && !bytes.Equal(r.digests.newEmail, s.digester.sum(nil, "email", r.NewEmail)):
		return "new_email does not match its digest"
	}
	if !bytes.Equal(recordHash(r), r.hash) {
		return "hash does not match the record's content"
	}
	return ""
}
