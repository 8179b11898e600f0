"""Confluent's own serializers behind a JSON-lines pipe: the test kit's encoder, independent of
the connector's decoder.

One request per line on stdin, one answer per line on stdout (nothing else is written there):

  {"format": "avro" | "protobuf" | "json_schema", "registry": URL, "topic": T, "is_key": false,
   "schema": TEXT, "value": JSON,
   "message": "pkg.Msg",              # protobuf: which message of the file (default: the first)
   "file_name": "name.proto",         # protobuf: the main file's name (default "schema.proto")
   "imports": {"dep.proto": TEXT},    # protobuf: files the main one imports; the serializer
                                      #   registers each as a reference (subject = file name)
   "references": [{"name", "subject", "version"}],  # schemas already registered elsewhere
   "basic_auth": "user:password",     # optional registry credentials
   "serializer_config": {...}}        # optional, merged over the defaults below
    -> {"hex": "<Confluent-framed bytes>"} | {"error": "..."}
  {"op": "register", "registry": URL, "subject": S, "schema": TEXT,
   "schema_type": "AVRO" | "PROTOBUF" | "JSON", "references": [...]} -> {"id": N} | {"error"}
  {"op": "ping"} -> {"ok": true, "confluent_kafka": VERSION}

Every request gets a fresh SchemaRegistryClient (no cache carried between tests, whose
registries may reuse a port) and a serializer with auto-registration and the topic-name subject
strategy (<topic>-value / <topic>-key): what a Confluent producer sends the registry.

Avro values that JSON cannot carry are marker objects, converted before serializing:
{"$decimal": "123.45"}, {"$bytes": "<hex>"}, {"$date": "YYYY-MM-DD"},
{"$timestamp": "RFC 3339"} (aware when it has an offset or Z, naive for local-timestamp),
{"$time": "HH:MM:SS[.ffffff]"}, {"$uuid": "..."}. Unions take plain values (the serializer picks
the branch). A primitive Avro schema must be written as {"type": "string"}: confluent-kafka 2.16.1's
AvroSerializer fails on the bare form "string". Protobuf values are proto3 JSON (google.protobuf.json_format.ParseDict), so a
Timestamp takes an RFC 3339 string, wrappers plain values and Struct an object.
"""

import datetime
import decimal
import json
import os
import subprocess
import sys
import tempfile
import uuid

import confluent_kafka
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
import grpc_tools

# What a default Confluent producer does; a request's serializer_config is merged over it.
SERIALIZER_DEFAULTS = {"auto.register.schemas": True}


def registry_client(request):
    conf = {"url": request["registry"]}
    if request.get("basic_auth"):
        conf["basic.auth.user.info"] = request["basic_auth"]
    return SchemaRegistryClient(conf)


def references(request):
    return [
        SchemaReference(r["name"], r["subject"], r["version"])
        for r in request.get("references") or []
    ]


def context(request):
    field = MessageField.KEY if request.get("is_key") else MessageField.VALUE
    return SerializationContext(request["topic"], field)


def serializer_config(request):
    return {**SERIALIZER_DEFAULTS, **(request.get("serializer_config") or {})}


MARKERS = {
    "$decimal": decimal.Decimal,
    "$bytes": bytes.fromhex,
    "$date": datetime.date.fromisoformat,
    "$timestamp": datetime.datetime.fromisoformat,
    "$time": datetime.time.fromisoformat,
    "$uuid": uuid.UUID,
}


def avro_value(value):
    """The JSON value with its marker objects replaced by the Python values they stand for."""
    if isinstance(value, dict):
        if len(value) == 1:
            (key, text), = value.items()
            if key in MARKERS:
                return MARKERS[key](text)
        return {k: avro_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [avro_value(v) for v in value]
    return value


def serialize_avro(request):
    schema = Schema(request["schema"], "AVRO", references(request))
    serializer = AvroSerializer(
        schema_registry_client=registry_client(request),
        schema_str=schema,
        conf=serializer_config(request),
    )
    return serializer(avro_value(request["value"]), context(request))


def serialize_json_schema(request):
    schema = Schema(request["schema"], "JSON", references(request))
    serializer = JSONSerializer(
        schema_str=schema,
        schema_registry_client=registry_client(request),
        conf=serializer_config(request),
    )
    return serializer(request["value"], context(request))


def compile_proto(main_name, files):
    """A FileDescriptorSet of the main file and everything it imports, compiled by protoc from
    .proto text (the well-known types come with grpcio-tools)."""
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    with tempfile.TemporaryDirectory(prefix="kps-proto-") as root:
        for name, text in files.items():
            path = os.path.join(root, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        out = os.path.join(root, "descriptors.pb")
        command = [sys.executable, "-m", "grpc_tools.protoc", f"-I{root}", f"-I{well_known}",
                   "--include_imports", f"--descriptor_set_out={out}", main_name]
        done = subprocess.run(command, capture_output=True, text=True, cwd=root)
        if done.returncode != 0:
            raise ValueError(f"protoc: {done.stderr.strip() or done.stdout.strip()}")
        with open(out, "rb") as f:
            return descriptor_pb2.FileDescriptorSet.FromString(f.read())


def message_class(request):
    """The message class the request names, built in a pool of its own (two tests may define
    different files of the same name)."""
    main_name = request.get("file_name") or "schema.proto"
    files = {**(request.get("imports") or {}), main_name: request["schema"]}
    pool = descriptor_pool.DescriptorPool()
    for file_proto in compile_proto(main_name, files).file:
        pool.Add(file_proto)
    file_descriptor = pool.FindFileByName(main_name)
    name = request.get("message")
    if name:
        descriptor = pool.FindMessageTypeByName(name)
    else:
        first = next(iter(file_descriptor.message_types_by_name), None)
        if first is None:
            raise ValueError(f"{main_name} defines no message")
        descriptor = file_descriptor.message_types_by_name[first]
    return message_factory.GetMessageClass(descriptor)


def serialize_protobuf(request):
    cls = message_class(request)
    message = json_format.ParseDict(request["value"], cls())
    serializer = ProtobufSerializer(
        msg_type=cls,
        schema_registry_client=registry_client(request),
        conf=serializer_config(request),
    )
    return serializer(message, context(request))


FORMATS = {
    "avro": serialize_avro,
    "protobuf": serialize_protobuf,
    "json_schema": serialize_json_schema,
}


def register(request):
    schema = Schema(request["schema"], request.get("schema_type") or "AVRO", references(request))
    return registry_client(request).register_schema(request["subject"], schema)


def answer(request):
    op = request.get("op", "serialize")
    if op == "ping":
        return {"ok": True, "confluent_kafka": confluent_kafka.__version__}
    if op == "register":
        return {"id": register(request)}
    if op == "serialize":
        serialize = FORMATS.get(request.get("format"))
        if serialize is None:
            raise ValueError(f"unknown format {request.get('format')!r}; one of {list(FORMATS)}")
        return {"hex": serialize(request).hex()}
    raise ValueError(f"unknown op {op!r}")


def main():
    out = sys.stdout
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            reply = answer(json.loads(line))
        except Exception as error:  # every failure is an answer; the process keeps serving
            reply = {"error": f"{type(error).__name__}: {error}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
