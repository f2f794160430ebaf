// The real consumer the evtools "js" dialect is compared with (Node 20).
//
// Reads all of stdin as bytes, splits it into lines on 0x0A bytes only (a final newline
// does not start another line; '\r' stays part of its line, where JSON treats it as
// whitespace), and for each line does what a typical Node service does with an event
// payload: Buffer -> toString('utf8') -> JSON.parse -> JSON.stringify. Writes one line per
// input line: the JSON.stringify output, or "ERR\t" followed by the error's message.
'use strict';

const chunks = [];
process.stdin.on('data', (c) => chunks.push(c));
process.stdin.on('end', () => {
  const data = Buffer.concat(chunks);
  const out = [];
  let start = 0;
  while (start < data.length) {
    let end = data.indexOf(0x0a, start);
    if (end === -1) end = data.length;
    const text = data.subarray(start, end).toString('utf8');
    try {
      out.push(JSON.stringify(JSON.parse(text)));
    } catch (e) {
      out.push('ERR\t' + e.message);
    }
    start = end + 1;
  }
  out.push('');
  process.stdout.write(out.join('\n'));
});
