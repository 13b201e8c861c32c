package models

import "testing"

func TestTextControls(t *testing.T) {
	for _, tt := range []struct {
		name   string
		given  string
		single bool // accepted as a one-line text (name, title, serial)
		multi  bool // accepted as a message
	}{
		{"plain", "Harbour station", true, true},
		{"accents, CJK, emoji", "Gare de l'Est — 東京 🔋", true, true},
		{"right-to-left letters", "محطة الميناء", true, true},
		{"newline", "line one\nline two", false, true},
		{"CR LF", "line one\r\nline two", false, true},
		{"lone CR", "progress 10%\rprogress 99%", false, false},
		{"CR at the end", "done\r", false, false},
		{"tab", "a\tb", false, true},
		{"ANSI escape", "\x1b[31mred\x1b[0m", false, false},
		{"bell", "ding\a", false, false},
		{"DEL", "a\x7fb", false, false},
		{"C1 CSI", "a\u009bb", false, false},
		{"C1 NEL", "a\u0085b", false, false},
		{"right-to-left override", "invoice\u202egpj.exe", false, false},
		{"left-to-right isolate", "a\u2066b\u2069", false, false},
		{"right-to-left mark", "a\u200fb", false, false},
		{"Arabic letter mark", "a\u061cb", false, false},
		{"zero-width joiner is not a control", "👩\u200d🔧", true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := singleLineText(tt.given) == ""; got != tt.single {
				t.Errorf("singleLineText(%q) accepted = %v, want %v", tt.given, got, tt.single)
			}
			if got := multiLineText(tt.given) == ""; got != tt.multi {
				t.Errorf("multiLineText(%q) accepted = %v, want %v", tt.given, got, tt.multi)
			}
		})
	}
}
