#!/usr/bin/env python3
# Writes the seed corpus (corpus/config): the example folder, the keepalived import
# golden files as host.toml, and near misses of each refusal class. Run from
# anywhere: python3 netcfg/fuzz/make_corpus.py
import glob, os
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
D = os.path.join(HERE, 'corpus', 'config')
MARK = b'\n#=== ve/'
def read(p): return open(os.path.join(ROOT, p), 'rb').read()
def folder(host, ves=()):
    out = host
    for name, body in ves:
        out += MARK + name.encode() + b'\n' + body
    return out
seeds = {
    'example': folder(read('dist/example/host.toml'), [('112.toml', read('dist/example/ve/112.toml'))]),
    'empty': b'',
    'lookalike_names': folder(b'', [('101.TOML', b'id = 101\n'), ('7.toml~', b'id = 7\n'), ('8.toml', b'id = 8\n')]),
    'same_name_twice': folder(b'', [('9.toml', b'id = 9\n'), ('9.toml', b'id = 10\n')]),
    'bad_addresses': b'[[bridge]]\nname = "br0"\naddresses = ["0.0.0.0/24", "224.0.0.5/24", "fe80::5/64", "255.255.255.255/32", "127.0.0.2/8"]\nmac = "00:00:00:00:00:00"\nports = ["vz-no-such0", "lo"]\n',
    've_refusals': folder(b'[[bridge]]\nname = "br0"\n', [('7.toml', b'id = 0\nhostname = "web\\"1"\nnetns = "/proc/self/ns/net"\n[[netif]]\nname = "eth\\u0000"\nbridge = "br0"\naddresses = ["10.0.0.7/24"]\ngateway = "10.0.0.1"\n[venet]\naddresses = ["10.1.0.7"]\n')]),
    'leading_zero': b'[[bridge]]\nname = "br0"\naddresses = ["010.0.0.1/8"]\n',
    'not_utf8': b'[[bridge]]\nname = "br\xff0"\n',
    'toml_syntax': b'[[bridge]\nname = "br0"\n',
}
for p in sorted(glob.glob(os.path.join(ROOT, 'agent/tests/import_keepalived/*.toml'))):
    name = os.path.basename(p)[:-len('.toml')].replace('keepalived.conf.', 'keepalived_').replace('.', '_')
    seeds[name] = open(p, 'rb').read()
os.makedirs(D, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(D, name), 'wb') as f:
        f.write(data)
