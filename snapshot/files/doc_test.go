package files

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDocTable checks that docs/snapshot-files.md shows the current table.
// FTL_UPDATE_DOCS=1 rewrites the table part of the document.
func TestDocTable(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "snapshot-files.md")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const marker = "\n## Support table\n"
	head, _, ok := strings.Cut(string(b), marker)
	if !ok {
		t.Fatalf("%s lacks %q", path, strings.TrimSpace(marker))
	}
	tbl := Markdown()
	if os.Getenv("FTL_UPDATE_DOCS") == "1" {
		rest := string(b)[len(head)+len(marker):]
		intro, _, _ := strings.Cut(rest, "| Kind |")
		if err := os.WriteFile(path, []byte(head+marker+intro+tbl), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !strings.Contains(string(b), tbl) {
		t.Errorf("%s: support table out of date; run FTL_UPDATE_DOCS=1 go test -run TestDocTable ./snapshot/files", path)
	}
	for _, s := range Table {
		if s.Note == "" {
			t.Errorf("kind %s has no note", s.Kind)
		}
	}
}
