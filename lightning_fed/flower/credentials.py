"""Certificates and node keys for a Flower deployment: a CA, the SuperLink's TLS certificate, one key pair per client.

``python -m lightning_fed.flower.credentials --out creds --server-host srv.example --clients Food Kitchen`` writes:

- ``ca.crt`` / ``ca.key``: a self-signed certificate authority (keep ``ca.key`` off the servers);
- ``server.pem`` / ``server.key``: the SuperLink's certificate for ``--server-host`` (and 127.0.0.1, localhost);
- ``<client>`` / ``<client>.pub``: each client's P-384 key pair in OpenSSH form, for SuperNode authentication (the
  private key goes to that client's machine only; the public key is registered with ``flwr supernode register``).

Any other tool that writes the same PEM files (openssl, an organisation's PKI) serves as well.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _write_private_key(
    key: ec.EllipticCurvePrivateKey, path: Path, form: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8
) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption()))
    path.chmod(0o600)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(host: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    try:
        names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        names.append(x509.DNSName(host))
    unique: dict[str, x509.GeneralName] = {str(n.value): n for n in names}
    return list(unique.values())


def write_credentials(out: Path, server_host: str, clients: list[str], days: int = 365) -> dict[str, Path]:
    """Write the CA, the SuperLink certificate and the clients' key pairs into ``out``; the written paths by role."""
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    valid = {"not_valid_before": now - datetime.timedelta(minutes=5), "not_valid_after": now + datetime.timedelta(days)}
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_cert = (
        x509.CertificateBuilder(subject_name=_name("lightning-fed CA"), issuer_name=_name("lightning-fed CA"), **valid)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA384())
    )
    server_key = ec.generate_private_key(ec.SECP384R1())
    server_cert = (
        x509.CertificateBuilder(subject_name=_name(server_host), issuer_name=ca_cert.subject, **valid)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.SubjectAlternativeName(_san(server_host)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA384())
    )
    paths = {"ca.crt": out / "ca.crt", "ca.key": out / "ca.key", "server.pem": out / "server.pem"}
    paths["ca.crt"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_private_key(ca_key, paths["ca.key"])
    paths["server.pem"].write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    paths["server.key"] = out / "server.key"
    _write_private_key(server_key, paths["server.key"])
    for client in clients:
        key = ec.generate_private_key(ec.SECP384R1())
        paths[client] = out / client
        _write_private_key(key, paths[client], serialization.PrivateFormat.OpenSSH)  # what flower-supernode reads
        paths[f"{client}.pub"] = out / f"{client}.pub"
        paths[f"{client}.pub"].write_bytes(
            key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        )
    return paths


def main(argv: list[str] | None = None) -> None:
    """Command line: ``--out DIR --server-host HOST --clients NAME [NAME ...] [--days N]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory to write into")
    parser.add_argument("--server-host", required=True, help="the SuperLink's host name or IP address")
    parser.add_argument("--clients", nargs="+", required=True, help="one key pair per client name")
    parser.add_argument("--days", type=int, default=365, help="validity of the certificates")
    args = parser.parse_args(argv)
    for role, path in write_credentials(args.out, args.server_host, args.clients, args.days).items():
        print(f"{role}: {path}")


if __name__ == "__main__":
    main()
