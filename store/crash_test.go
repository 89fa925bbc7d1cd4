package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// crashLoad runs in the child process: 16 writers append as fast as they
// can, and each prints the id of every record it was acknowledged, until
// the parent kills the process.
func crashLoad(s *Store) {
	var mu sync.Mutex
	for w := 0; w < 16; w++ {
		go func() {
			for i := 0; ; i++ {
				r := testRecord([]string{"shop", "blog"}[i%2])
				if i%5 == 0 {
					r = signupRecord("shop", fmt.Sprintf("w%d-%d@example.org", w, i))
				}
				got, err := s.Append(context.Background(), r)
				if err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					os.Exit(1)
				}
				mu.Lock()
				os.Stdout.WriteString(got.ID + "\n") // unbuffered: the parent sees it at once
				mu.Unlock()
			}
		}()
	}
	select {}
}

// TestCrashLosesNoAcknowledgedRecord kills a process appending under load
// with SIGKILL at a random moment, several times over the same file, and
// checks that every record it acknowledged is there and every chain
// verifies.
func TestCrashLosesNoAcknowledgedRecord(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	path := filepath.Join(t.TempDir(), "assent.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, site := range []string{"shop", "blog"} {
		if _, err := s.CreateSite(testSite(site)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()

	acked := map[string]bool{}
	for round := 0; round < 5; round++ {
		cmd, out := startHelper(t, "load", path)
		lines := make(chan []string)
		first := make(chan struct{})
		go func() {
			var ids []string
			for out.Scan() {
				if ids = append(ids, out.Text()); len(ids) == 1 {
					close(first)
				}
			}
			lines <- ids
		}()
		// Kill at a random moment once the load runs: a loaded machine may
		// take a while to start the child.
		select {
		case <-first:
		case <-time.After(60 * time.Second):
		}
		time.Sleep(time.Duration(rand.IntN(500)) * time.Millisecond)
		if err := cmd.Process.Kill(); err != nil { // SIGKILL
			t.Fatal(err)
		}
		ids := <-lines
		cmd.Wait()
		if len(ids) == 0 {
			t.Fatalf("round %d: the child acknowledged nothing", round)
		}
		for _, id := range ids {
			acked[id] = true
		}

		s, err := Open(path, Options{})
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
		}
		stored := map[string]bool{}
		for _, site := range []string{"shop", "blog"} {
			for _, r := range allRecords(t, s, site) {
				stored[r.ID] = true
			}
		}
		missing := 0
		for id := range acked {
			if !stored[id] {
				missing++
			}
		}
		rep, err := s.Verify()
		s.Close()
		if err != nil || !rep.OK {
			t.Fatalf("round %d: Verify = %+v, %v", round, rep, err)
		}
		if missing > 0 {
			t.Fatalf("round %d: %d of %d acknowledged records missing after SIGKILL", round, missing, len(acked))
		}
		t.Logf("round %d: killed after %d acknowledged records; %d stored in all, every acknowledged one present", round, len(ids), rep.Records)
	}
}
