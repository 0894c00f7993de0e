"""Test certificates, made at test time with Debian's openssl (nothing private is committed).

A CA signs a server certificate for 127.0.0.1/localhost and client certificates whose DNS SAN
is the identity's tls_subject; a second, unrelated CA signs certificates stockd must refuse;
`openssl ca` with explicit dates makes a certificate that has already expired.
"""
import os
import subprocess


def _run(*args, cwd):
    result = subprocess.run(["openssl", *args], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (args[0], result.stderr))


class Authority:
    """A CA in directory/name.{key,pem} that issues leaf certificates into the same directory."""

    def __init__(self, directory, name):
        self.dir = directory
        self.name = name
        self.key = os.path.join(directory, name + ".key")
        self.pem = os.path.join(directory, name + ".pem")
        _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", self.key, "-out", self.pem, "-days", "2", "-subj", "/CN=" + name,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
        self.serial = 1000

    def issue(self, leaf, subject_cn, sans, client=False, expired=False):
        """Writes leaf.key and leaf.pem signed by this CA; returns (cert path, key path)."""
        key = os.path.join(self.dir, leaf + ".key")
        csr = os.path.join(self.dir, leaf + ".csr")
        pem = os.path.join(self.dir, leaf + ".pem")
        ext = os.path.join(self.dir, leaf + ".ext")
        usage = "clientAuth" if client else "serverAuth"
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=%s\n" % usage)
            if sans:
                f.write("subjectAltName=%s\n" % ",".join(sans))
        _run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", csr, "-subj", "/CN=" + subject_cn, cwd=self.dir)
        self.serial += 1
        if expired:
            self._sign_expired(csr, pem, ext)
        else:
            _run("x509", "-req", "-in", csr, "-CA", self.pem, "-CAkey", self.key,
                 "-set_serial", str(self.serial), "-days", "2", "-extfile", ext, "-out", pem,
                 cwd=self.dir)
        return pem, key

    def _sign_expired(self, csr, pem, ext):
        """`openssl x509` cannot back-date; `openssl ca` takes explicit start and end dates."""
        db = os.path.join(self.dir, self.name + "-db")
        os.makedirs(db, exist_ok=True)
        open(os.path.join(db, "index.txt"), "a").close()
        with open(os.path.join(db, "serial"), "w") as f:
            f.write("%04X\n" % self.serial)
        conf = os.path.join(db, "ca.cnf")
        with open(conf, "w") as f:
            f.write("[ca]\ndefault_ca=d\n[d]\ndatabase=%s/index.txt\nnew_certs_dir=%s\n"
                    "serial=%s/serial\ncertificate=%s\nprivate_key=%s\ndefault_md=sha256\npolicy=p\n"
                    "unique_subject=no\n[p]\ncommonName=supplied\n"
                    % (db, db, db, self.pem, self.key))
        _run("ca", "-batch", "-config", conf, "-in", csr, "-out", pem, "-notext",
             "-startdate", "20200101000000Z", "-enddate", "20200102000000Z",
             "-extfile", ext, cwd=self.dir)


def server_certificate(ca, leaf="server"):
    return ca.issue(leaf, "stockd", ["IP:127.0.0.1", "DNS:localhost"])


def client_certificate(ca, subject, leaf=None, expired=False, san=True):
    """A client certificate naming subject as its DNS SAN (or only as its CN when san is
    False)."""
    return ca.issue(leaf or subject, subject, ["DNS:" + subject] if san else [], client=True,
                    expired=expired)


def read(path):
    with open(path, "rb") as f:
        return f.read()
