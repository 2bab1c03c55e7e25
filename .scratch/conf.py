import sys, os; sys.path.insert(0,'/work/wt-sql/.scratch')
from split import *
L=load('sql.rs'); os.makedirs('sql',exist_ok=True)
def pub2(lines):
    out=[]; prev=''
    for l in lines:
        if ITEM.match(l) and not l.startswith(('impl','mod')) and not prev.startswith('#[tokio::test'):
            l='pub(super) '+l
        out.append(l)
        if l.strip(): prev=l
    return out
def w(name, doc, ranges, uses=''):
    body=pub2(take(L,ranges))
    open('sql/'+name,'w').write(doc+'\nuse super::*;\n'+uses+'\n'+'\n'.join(body)+'\n')
mod=take(L,[(1,288)])
open('sql/mod.rs','w').write('\n'.join(mod)+'\n')
w('values.rs','//! The battery\'s checks of what statements return: values, columns, counts, and the\n//! errors of a bad statement.\n',[(291,789)])
w('transactions.rs','//! The battery\'s checks of transactions: commit and rollback, isolation, batches, a\n//! failed statement inside one, and transaction control sent as guest SQL.\n',[(790,1140)])
w('host_table.rs','//! The battery\'s isolation probe of the host\'s own table inside a store.\n',[(1141,1291)])
w('limits.rs','//! The battery\'s checks of limits: a runaway statement, a result over its cap, and\n//! concurrent writers.\n',[(1292,1488)])
w('backends.rs','//! The battery run against each backend: SQLite, and the PostgreSQL and MariaDB servers on\n//! this machine.\n',[(1492,1623)])
w('mysql_host.rs','//! MariaDB only: the host\'s statements through `silo_exec`, and what the store\'s own login\n//! cannot do with them.\n',[(1624,1764)])
w('neighbours.rs','//! Two services\' stores on one shared server: neither can reach the other\'s tables.\n',[(1765,1904)])
