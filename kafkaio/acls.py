"""Least-privilege Kafka ACLs per role, from the settings: the one list docs and tests share.

Roles and what each does on the broker (deploy/README.md, "ACLs"):

- producer (`produce-csv`): writes `transactions` in transactions of its
  own (one transactional id per input), keeps its ingestion journal
  (`<transactions>-ingest`: read, write, create), reads that journal back.
- worker (`faust -A processor worker`): reads `transactions`; creates and
  writes the rejected and DLQ topics; owns every topic named `<app id>-...`
  (the two changelogs, Faust's assignor topic); is a member of the group
  `<app id>`; commits in transactions named `<app id>-ledger-<partition>`.
- exporter (`export-snapshot`): reads the changelogs, and with `--wait`
  lists (never reads) the input's ends and the group's committed offsets.

Nobody gets cluster-wide rights, and nobody but the worker can write a
changelog: a stolen producer credential can publish rows (which the rules
then judge), but cannot write balances.

The tools read with a consumer that never joins a group (assign only), but
librdkafka still asks for its group's coordinator: `ledger-export` needs
Describe and Read for every reader role.
"""

from __future__ import annotations

from dataclasses import dataclass

from kafkaio.settings import Settings

ROLES = ("producer", "worker", "exporter")
#: The group id of every assign-only reader of ours (kafkaio.admin); never joined.
READER_GROUP = "ledger-export"
#: The group id of produce-csv's offsets reader (producers.csv_producer); never joined.
PRODUCER_GROUP = "produce-csv"


@dataclass(frozen=True)
class Grant:
    #: TOPIC, GROUP or TRANSACTIONAL_ID (Kafka's resource types)
    resource: str
    name: str
    #: LITERAL (that name) or PREFIXED (every name starting with it)
    pattern: str
    operations: tuple[str, ...]


def grants(role: str, settings: Settings) -> list[Grant]:
    s = settings
    t = s.transactions_topic
    if role == "producer":
        return [
            Grant("TOPIC", t, "LITERAL", ("WRITE", "DESCRIBE")),
            Grant("TOPIC", s.journal_topic, "LITERAL", ("READ", "WRITE", "DESCRIBE", "CREATE")),
            # producers.journal.transactional_id: `ingest-<topic>-<hash of the input>`
            Grant("TRANSACTIONAL_ID", f"ingest-{t}-", "PREFIXED", ("WRITE", "DESCRIBE")),
            Grant("GROUP", READER_GROUP, "LITERAL", ("READ", "DESCRIBE")),
            Grant("GROUP", PRODUCER_GROUP, "LITERAL", ("READ", "DESCRIBE")),
        ]
    if role == "worker":
        return [
            Grant("TOPIC", t, "LITERAL", ("READ", "DESCRIBE", "CREATE")),
            Grant("TOPIC", s.rejected_topic, "LITERAL", ("WRITE", "DESCRIBE", "CREATE")),
            Grant("TOPIC", s.dlq_topic, "LITERAL", ("WRITE", "DESCRIBE", "CREATE")),
            # The changelogs and Faust's own topics are all `<app id>-...`.
            Grant("TOPIC", f"{s.app_id}-", "PREFIXED", ("READ", "WRITE", "DESCRIBE", "CREATE")),
            Grant("GROUP", s.app_id, "LITERAL", ("READ", "DESCRIBE")),
            Grant("GROUP", READER_GROUP, "LITERAL", ("READ", "DESCRIBE")),
            # processor.writer.transactional_id: `<app id>-ledger-<partition>`
            Grant("TRANSACTIONAL_ID", f"{s.app_id}-ledger-", "PREFIXED", ("WRITE", "DESCRIBE")),
        ]
    if role == "exporter":
        return [
            Grant("TOPIC", s.changelog_topic("accounts"), "LITERAL", ("READ", "DESCRIBE")),
            Grant("TOPIC", s.changelog_topic("deposits"), "LITERAL", ("READ", "DESCRIBE")),
            # --wait: the input's ends (ListOffsets) and the group's committed
            # offsets need Describe only; the exporter never reads a row.
            Grant("TOPIC", t, "LITERAL", ("DESCRIBE",)),
            Grant("GROUP", s.app_id, "LITERAL", ("DESCRIBE",)),
            Grant("GROUP", READER_GROUP, "LITERAL", ("READ", "DESCRIBE")),
        ]
    raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")


def kafka_acls_commands(role: str, settings: Settings, principal: str) -> list[str]:
    """The grants as `kafka-acls.sh` command lines (what an operator runs, or reads)."""
    option = {"TOPIC": "--topic", "GROUP": "--group", "TRANSACTIONAL_ID": "--transactional-id"}
    lines = []
    for grant in grants(role, settings):
        operations = " ".join(f"--operation {op.title()}" for op in grant.operations)
        pattern = " --resource-pattern-type prefixed" if grant.pattern == "PREFIXED" else ""
        lines.append(
            f"kafka-acls.sh --bootstrap-server $BOOTSTRAP --command-config admin.properties "
            f"--add --allow-principal {principal} {operations} "
            f"{option[grant.resource]} '{grant.name}'{pattern}"
        )
    return lines


def create(admin: object, role: str, settings: Settings, principal: str) -> None:
    """Create the role's ACLs for `principal` with a confluent-kafka AdminClient."""
    # Exported by confluent_kafka.admin at run time, but not declared for
    # type checkers: imported from where they are defined.
    from confluent_kafka.admin._acl import AclBinding, AclOperation, AclPermissionType
    from confluent_kafka.admin._resource import ResourcePatternType, ResourceType

    bindings = [
        AclBinding(
            ResourceType[grant.resource],
            grant.name,
            ResourcePatternType[grant.pattern],
            principal,
            "*",
            AclOperation[operation],
            AclPermissionType.ALLOW,
        )
        for grant in grants(role, settings)
        for operation in grant.operations
    ]
    for future in admin.create_acls(bindings).values():  # type: ignore[attr-defined]
        future.result(timeout=30)
