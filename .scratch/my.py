import sys, os; sys.path.insert(0,'/work/wt-sql/.scratch')
from split import *
L=load('mysql.rs'); os.makedirs('mysql',exist_ok=True)
def w(name, doc, ranges, extra=''):
    body=pubify(take(L,ranges))
    s=doc+'\nuse super::*;\n\n'+'\n'.join(body)+'\n'+extra
    open('mysql/'+name,'w').write(s.replace('mytext::','text::'))
mod=take(L,[(1,120),(220,224),(556,747),(966,1157),(1400,1461)])
s='\n'.join(mod)+'\n\nmod guard;\nmod host_sql;\nmod portable;\nmod provision;\nmod text;\nmod transaction;\nmod values;\n#[cfg(test)]\nmod tests;\n'
s=s.replace('mytext::','text::').replace('use super::mytext;\n','')
s=s.replace('use super::{\n    CallLimits, ExecResult','''use self::guard::{check_guest, check_guest_in_tx, reads_only};
use self::host_sql::{host_sql, is_host_savepoint};
pub use self::provision::{deprovision, provision};
use self::transaction::{MyTransaction, host_call, open_tx};
use self::values::{decode, params_of};
use super::{
    CallLimits, ExecResult''',1)
open('mysql/mod.rs','w').write(s)
w('provision.rs','//! Provisioning of a store on the server: its two databases, its login user and locked\n//! definer, the host\'s tables and procedures, ownership, and removing them again.\n',[(121,219),(225,555)])
w('guard.rs','//! What a guest statement may not send to MariaDB, anywhere and inside a transaction,\n//! checked before its text reaches the server.\n',[(748,877)])
w('values.rs','//! Values between silo and MariaDB: parameters, and columns decoded by their type and\n//! character set.\n',[(878,965)])
tests_host='\n'.join(L[1673:1727])
w('host_sql.rs','//! The rewriting of the host\'s own statements (written in SQLite\'s dialect) for MariaDB,\n//! run through the `silo_exec` procedure.\n',[(1158,1287)],extra='\n#[cfg(test)]\nmod tests {\n    use super::*;\n\n'+tests_host+'\n}\n')
w('transaction.rs','//! A MariaDB transaction, the writer lock it holds, and the host statements it runs\n//! through `silo_exec`.\n',[(1288,1399),(1462,1669)])
body=[l[4:] if l.startswith('    ') else l for l in L[1727:1818]]
open('mysql/tests.rs','w').write(('//! Unit tests of the MariaDB backend.\n\nuse super::guard::commits_implicitly;\nuse super::provision::grant_db;\nuse super::*;\n\n'+'\n'.join(body)+'\n').replace('mytext::','text::'))
