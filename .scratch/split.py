"""Cut a Rust file into several by 1-based inclusive line ranges; make moved top-level items pub(super)."""
import re, sys, json
def load(p): return open(p).read().split('\n')
def take(lines, ranges):
    out=[]
    for a,b in ranges:
        out.extend(lines[a-1:b])
        out.append('')
    while out and out[-1]=='': out.pop()
    return out
ITEM=re.compile(r'^(async fn|fn|const|static|struct|enum|type|impl|trait|mod)\b')
def pubify(lines):
    res=[]
    for l in lines:
        if ITEM.match(l) and not l.startswith('impl') and not l.startswith('mod'):
            l='pub(super) '+l
        res.append(l)
    return res
def tests_body(lines, start, end):
    # lines[start] is 'mod tests {', lines[end] is '}'
    body=lines[start+1:end-1]
    return [l[4:] if l.startswith('    ') else l for l in body]
