"""``s3t certificate``: issue, render and verify deletion certificates; show or rotate the signing key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .cli_common import DbOpt, JsonOpt, WorkspaceOpt, emit, out

app = typer.Typer(
    help="Signed deletion certificates that a third party can verify offline with the public key.\n\n"
    "Example: s3t certificate issue REQ_ID -w ws --out cert.json --html cert.html; "
    "s3t certificate key -w ws --out key.pem; s3t certificate verify cert.json --key key.pem",
    no_args_is_help=True,
)


@app.command("issue")
def issue(
    request_id: str = typer.Argument(..., help="The forget request (its receipt's request_id)."),
    workspace: Path = WorkspaceOpt,
    db: Optional[str] = DbOpt,
    out_file: Optional[Path] = typer.Option(None, "--out", help="Write the signed JSON here (else print it)."),
    html: Optional[Path] = typer.Option(None, "--html", help="Also write a human-readable HTML rendering."),
) -> None:
    """Issue the signed certificate of one forget request: records as keyed fingerprints, the commit,
    the served manifest before/after and now, each served checkpoint's sha256 and lineage (slice
    members as fingerprints, none deleted), the history audit and the last `s3t verify` of the request.

    Example: s3t certificate issue req-0123abcd -w ws --out cert.json --html cert.html
    """
    from .certificate import issue_certificate, render_html
    from .estimator import S3T

    cert = issue_certificate(S3T.load(workspace, db=db), request_id)
    text = json.dumps(cert, indent=2, sort_keys=True)
    if out_file is None:
        out.print_json(text)
    else:
        out_file.write_text(text + "\n")
        out.print(f"certificate of {request_id} written to {out_file} (key {cert['signature']['key_id']})")
    if html is not None:
        html.write_text(render_html(cert))


@app.command("verify")
def verify(
    cert_file: Path = typer.Argument(..., help="A certificate JSON file."),
    key: Path = typer.Option(..., "--key", help="The workspace's public key (PEM), e.g. from `s3t certificate key`."),
    workspace: Optional[Path] = typer.Option(None, "--workspace", "-w",
                                             help="Also re-hash the certified checkpoint files in this workspace."),
    as_json: bool = JsonOpt,
) -> None:
    """Check a certificate offline: the signature with the public key, its internal consistency (member
    digests, no deleted record in any served lineage, history audit clean), and with -w the checkpoint
    files' sha256. Exit 1 when anything fails, with the reasons.

    Example: s3t certificate verify cert.json --key key.pem -w ws
    """
    from .certificate import verify_certificate

    try:
        cert = json.loads(cert_file.read_text())
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="CERT_FILE") from exc
    check = verify_certificate(cert, key.read_text(), workspace)

    def render(d):
        if d["ok"]:
            out.print(f"[green]valid[/]: signature ok, consistent"
                      + (f", {d['files_checked']} checkpoint file(s) match" if workspace else ""))
        else:
            out.print("[red]INVALID[/]:\n  " + "\n  ".join(d["problems"]), soft_wrap=True)

    emit(check.to_dict(), as_json, render)
    if not check.ok:
        raise typer.Exit(1)


@app.command("key")
def key(
    workspace: Path = WorkspaceOpt,
    out_file: Optional[Path] = typer.Option(None, "--out", help="Write the current public key (PEM) here."),
    rotate: bool = typer.Option(False, "--rotate", help="Make a new key pair; the old public key stays listed."),
    as_json: bool = JsonOpt,
) -> None:
    """Print the workspace's public signing key(s) (created on first use; private key mode 0600).

    Example: s3t certificate key -w ws --out key.pem
    """
    from .store.signing import public_keys, public_pem, rotate_signing_key

    if rotate:
        done = rotate_signing_key(workspace)
        out.print(f"rotated: {done['retired']} retired, {done['current']} current")
    pem = public_pem(workspace)
    if out_file is not None:
        out_file.write_text(pem)
    emit({"current": pem, "keys": public_keys(workspace)}, as_json, lambda d: out.print(d["current"], end=""))
