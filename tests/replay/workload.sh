#!/bin/sh
# The replay fixtures' workload: every event type, absolute paths, hostile names.
set -e
w=$1
rm -rf "$w"
mkdir "$w"
cd "$w"
printf 'hello\n' > "$w/a.txt"
cat "$w/a.txt" > /dev/null
chmod 600 "$w/a.txt"
mv "$w/a.txt" "$w/b.txt"
printf 'x' >> "$w/b.txt"
sync "$w/b.txt"
nl='
'
esc=$(printf '\033')
printf 'n' > "$w/new${nl}line"
printf 'e' > "$w/esc${esc}[31mred"
printf 'b' > "$w/back\\slash"
printf 'u' > "$(printf "$w/bad\377utf8")"
printf 'r' > "$w/rtl‮txt"
rm "$w/b.txt" "$w/new${nl}line" "$w/esc${esc}[31mred" "$w/back\\slash" "$(printf "$w/bad\377utf8")" "$w/rtl‮txt"
/bin/true
cd /
rmdir "$w"
