package controllers

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEventNoteFitsTheEventsAPI(t *testing.T) {
	short := "3 pre-migration check(s) failed"
	if got := eventNote(short); got != short {
		t.Fatalf("a short note must pass unchanged, got %q", got)
	}
	long := strings.Repeat("デプロイ", 200) // multi-byte, so a naive cut would split a rune
	got := eventNote(long)
	if len(got) > maxEventNote || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") {
		t.Fatalf("want a valid UTF-8 note of at most %d bytes ending in an ellipsis, got %d bytes, valid=%v",
			maxEventNote, len(got), utf8.ValidString(got))
	}
}
