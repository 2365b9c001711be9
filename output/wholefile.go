package output

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// WriteWhole writes a file that render fills to path whole or not at all:
// into a temporary file of the same directory (mode 0600), renamed into
// place once synced, so that a failed write leaves no partial file and
// never truncates the one already there. The file is handed to owner
// when set (the user behind sudo). what names the file in errors.
func WriteWhole(path, what string, owner Owner, render func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("creating %s: %w", what, err)
	}
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	w := bufio.NewWriterSize(f, 1<<20)
	if err := render(w); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("writing %s: %w", what, err)
	}
	if owner.Set {
		if err := f.Chown(owner.UID, owner.GID); err != nil {
			return fmt.Errorf("handing %s to uid %d: %w", what, owner.UID, err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", what, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", what, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		done = true
		return fmt.Errorf("renaming %s into place: %w", what, err)
	}
	done = true
	return nil
}
