// Command go_roundtrip is the real consumer the evtools "go" dialect is compared with.
//
// It reads all of stdin, splits it into lines on '\n' bytes only (a final '\n' does not
// start another line; '\r' stays part of its line, where JSON treats it as whitespace),
// and for each line does what a typical Go service does with an event payload:
// json.Unmarshal into an interface{} and json.Marshal back. It writes one line per input
// line: the json.Marshal output, or "ERR\t" followed by err.Error().
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
)

func main() {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(2)
	}
	lines := bytes.Split(data, []byte{'\n'})
	if len(lines) > 0 && len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	out := bufio.NewWriterSize(os.Stdout, 1<<20)
	defer out.Flush()
	for _, line := range lines {
		var v interface{}
		if err := json.Unmarshal(line, &v); err != nil {
			out.WriteString("ERR\t" + err.Error() + "\n")
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			out.WriteString("ERR\t" + err.Error() + "\n")
			continue
		}
		out.Write(b)
		out.WriteByte('\n')
	}
}
