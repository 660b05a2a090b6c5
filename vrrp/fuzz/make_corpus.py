#!/usr/bin/env python3
# Writes the seed corpus (corpus/ipv4, corpus/ipv6): valid adverts of every form and
# near misses. Run from anywhere: python3 vrrp/fuzz/make_corpus.py
import struct, ipaddress, os
D=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus')
def csum(b):
    if len(b)%2: b+=b'\0'
    s=sum(struct.unpack('!%dH'%(len(b)//2), b))
    while s>>16: s=(s&0xffff)+(s>>16)
    return (~s)&0xffff
def v4(a): return ipaddress.IPv4Address(a).packed
def v6(a): return ipaddress.IPv6Address(a).packed
def vrrp_v3(vrid, prio, cs, addrs, pseudo=None):
    body=bytes([0x31, vrid, prio, len(addrs)])+struct.pack('!HH', cs & 0xfff, 0)+b''.join(addrs)
    if pseudo is not None:
        src,dst,fam=pseudo
        if fam==4: ph=src+dst+bytes([0,112])+struct.pack('!H',len(body))
        else: ph=src+dst+struct.pack('!I',len(body))+bytes([0,0,0,112])
        c=csum(ph+body)
    else:
        c=csum(body)
    return body[:6]+struct.pack('!H',c)+body[8:]
def vrrp_v2(vrid, prio, adv, addrs, auth_type=0, pw=b''):
    auth=pw.ljust(8,b'\0') if auth_type==1 else b'\0'*8
    body=bytes([0x21, vrid, prio, len(addrs), auth_type, adv])+b'\0\0'+b''.join(addrs)+auth
    c=csum(body)
    return body[:6]+struct.pack('!H',c)+body[8:]
def ip4(payload, ttl=255, src='10.0.0.1', dst='224.0.0.18', options=b''):
    ihl=5+len(options)//4
    h=bytes([0x40|ihl,0xc0])+struct.pack('!HHHBBH',20+len(options)+len(payload),0,0,ttl,112,0)+v4(src)+v4(dst)+options
    h=h[:10]+struct.pack('!H',csum(h))+h[12:]
    return h+payload
S,G=v4('10.0.0.1'),v4('224.0.0.18')
files={
 'v3_keepalived_checksum': ip4(vrrp_v3(51,200,100,[v4('10.0.0.100')],(S,G,4))),
 'v3_rfc9568_checksum': ip4(vrrp_v3(51,200,100,[v4('10.0.0.100')])),
 'v3_priority_zero': ip4(vrrp_v3(51,0,10,[v4('10.0.0.100')],(S,G,4))),
 'v3_owner_two_addresses': ip4(vrrp_v3(51,255,4095,[v4('10.0.0.1'),v4('10.0.0.100')],(S,G,4))),
 'v3_other_vrid': ip4(vrrp_v3(52,100,100,[v4('10.0.0.100')],(S,G,4))),
 'v2_no_auth': ip4(vrrp_v2(51,100,1,[v4('10.0.0.100')])),
 'v2_password': ip4(vrrp_v2(51,150,1,[v4('10.0.0.100')],1,b'secret')),
 'v2_interval_zero': ip4(vrrp_v2(51,150,0,[v4('10.0.0.100')])),
 'ttl_64': ip4(vrrp_v3(51,200,100,[v4('10.0.0.100')],(S,G,4)),ttl=64),
 'ip_options': ip4(vrrp_v3(51,200,100,[v4('10.0.0.100')],(S,G,4)),options=b'\x94\x04\x00\x00'),
 'count_too_large': ip4(vrrp_v3(51,200,100,[v4('10.0.0.100')],(S,G,4))[:3]+b'\x05'+vrrp_v3(51,200,100,[v4('10.0.0.100')],(S,G,4))[4:]),
 'truncated_header': ip4(b'\x31\x33\xc8'),
 'empty': b'',
}
for n,b in files.items():
    open(os.path.join(D,'ipv4',n),'wb').write(b)
L,M=v6('fe80::1'),v6('ff02::12')
f6={
 'v3_one_address': vrrp_v3(51,200,100,[v6('fd00::100')],(L,M,6)),
 'v3_two_addresses': vrrp_v3(51,100,10,[v6('fd00::100'),v6('2001:db8::1')],(L,M,6)),
 'v3_priority_zero': vrrp_v3(51,0,100,[v6('fd00::100')],(L,M,6)),
 'v3_bad_checksum': vrrp_v3(51,200,100,[v6('fd00::100')]),
 'v3_no_addresses': vrrp_v3(51,200,100,[],(L,M,6)),
 'v2_on_ipv6': vrrp_v2(51,100,1,[v4('10.0.0.100')]),
 'ipv4_sized_address': vrrp_v3(51,200,100,[v4('10.0.0.100')],(L,M,6)),
 'empty': b'',
}
for n,b in f6.items():
    open(os.path.join(D,'ipv6',n),'wb').write(b)
print(len(files),len(f6))
