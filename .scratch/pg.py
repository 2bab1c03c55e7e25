import sys, os; sys.path.insert(0,'/work/wt-sql/.scratch')
from split import *
L=load('postgres.rs'); os.makedirs('postgres',exist_ok=True)
def w(name, doc, uses, ranges, pub=True, extra=''):
    body=take(L,ranges)
    if pub: body=pubify(body)
    open('postgres/'+name,'w').write(doc+'\n'+(uses+'\n' if uses else '')+'\n'.join(body)+'\n'+extra)
mod=take(L,[(1,53),(79,111),(227,230),(624,727),(1025,1188),(1189,1216),(1275,1426)])
open('postgres/mod.rs','w').write('\n'.join(mod)+'\n\nmod guard;\nmod host_sql;\nmod pool;\nmod portable;\nmod provision;\nmod text;\nmod transaction;\nmod values;\n#[cfg(test)]\nmod tests;\n')
w('pool.rs','//! The pool of a store\'s connections: each connection with its server process id, so a\n//! statement past its budget can be cancelled and, failing that, its process ended.\n','',[(112,226)])
w('provision.rs','//! Provisioning of a store on the server: its role, its database and their ownership, the\n//! host\'s schema with its row-level security, and removing them again.\n','',[(231,623)])
w('guard.rs','//! What a guest statement may not send to PostgreSQL, checked before its text reaches the\n//! server, and the guest text as the server gets it.\n','',[(54,78),(728,757),(773,778)])
w('host_sql.rs','//! The rewriting of the host\'s own statements (written in SQLite\'s dialect) for PostgreSQL.\n','',[(758,772)],extra='''
#[cfg(test)]
mod tests {
    use super::*;

'''+'\n'.join(L[1693:1702])+'\n}\n')
w('values.rs','//! Values between silo and PostgreSQL: parameters bound as the type the server inferred,\n//! and columns decoded from the binary format.\n','',[(779,1024)])
w('transaction.rs','//! A PostgreSQL transaction (or a lease of a connection for one statement), and the gate\n//! its host statements pass through.\n','',[(1217,1274),(1427,1688)])
open('postgres/tests.rs','w').write('//! Unit tests of the PostgreSQL backend.\n\nuse super::values::{date_text, numeric_text, timestamp_text};\nuse super::*;\n\n'+'\n'.join(l[4:] if l.startswith('    ') else l for l in L[1702:1745])+'\n')
