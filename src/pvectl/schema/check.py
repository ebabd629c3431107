"""Parameter validation as pve-common `src/PVE/JSONSchema.pm` does it (`check_format`,
`parse_property_string`, `check_type`, `check_prop`, `check_object`), with its error texts byte for
byte; the coercion `validate` applies afterwards; and a looser check of returned data against an
endpoint's `returns` schema."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .formats import FORMATS, HASH_FORMATS
from .perl import (IS_INTEGER_RE, JSON_BOOL_CLASS, Die, add_error, anchored, format_error, is_number, num,
                   perl_ref, perl_str, perl_true)
from .urlencoded import RepeatedValue, split_list


_FORMAT_NAME_RE = re.compile(r"^(.*?)(?:-(list|opt))?$")


def check_format(fmt: Any, value: str, path: str) -> None:
    """JSONSchema.pm::check_format; raises Die with `$@`."""
    if isinstance(fmt, dict):
        parse_property_string(fmt, value, path)
        return
    if fmt == "regex":
        return
    m = _FORMAT_NAME_RE.match(fmt)
    name, kind = (m.group(1), m.group(2) or "none") if m else (fmt, "none")
    if name in HASH_FORMATS:
        if kind != "none":
            raise Die(f"'-{kind}' format must have code ref, not hash\n")
        parse_property_string(HASH_FORMATS[name], value, path)
        return
    validator = FORMATS.get(name)
    if validator is None:
        return  # not implemented here: accepted (see FORMATS)
    if kind == "list":
        for item in split_list(value):  # "Note: we allow empty lists"
            validator(item)
    elif kind == "opt":
        if perl_true(value):
            validator(value)
    else:
        validator(value)


_PS_KV_RE = re.compile(r"^([^=]+)=(.+)$")
_BLANK_RE = re.compile(r"^\s*$")


def _parse_boolean(text: str) -> int | None:  # JSONSchema.pm::parse_boolean
    if re.match(r"^(1|on|yes|true)$", text, re.I):
        return 1
    if re.match(r"^(0|off|no|false)$", text, re.I):
        return 0
    return None


def parse_property_string(fmt: dict[str, dict[str, Any]], data: str, path: str) -> dict[str, Any]:
    """JSONSchema.pm::parse_property_string (additional properties not allowed)."""
    res: dict[str, Any] = {}
    default_key: str | None = None
    for part in data.split(","):
        if _BLANK_RE.match(part):
            continue
        m = _PS_KV_RE.match(part)
        if m:
            k, v = m.group(1), m.group(2)
            if res.get(k) is not None:
                raise Die(f"duplicate key in comma-separated list property: {k}\n")
            schema = fmt.get(k)
            alias = schema.get("alias") if schema else None
            if alias:
                key_alias = schema.get("keyAlias") if schema else None
                if key_alias:
                    if res.get(key_alias) is not None:
                        raise Die(f"key alias '{key_alias}' is already defined\n")
                    res[key_alias] = k
                k = alias
                schema = fmt.get(k)
            if not schema:
                raise Die(f"invalid key in comma-separated list property: {k}\n")
            if schema.get("type") == "boolean":
                parsed = _parse_boolean(v)
                res[k] = parsed if parsed is not None else v
            else:
                res[k] = v
        elif "=" not in part:
            if default_key:
                raise Die(f"duplicate key in comma-separated list property: {default_key}\n")
            for key, sub in fmt.items():
                if sub.get("default_key"):
                    default_key = key
                    current = res.get(key)
                    if current is None or not perl_true(perl_str(current)):
                        res[key] = part
                        break
                    raise Die(f"duplicate key in comma-separated list property: {default_key}\n")
            if not default_key:
                raise Die("value without key, but schema does not define a default key\n")
        else:
            raise Die("missing key in comma-separated list property\n")
    errors: dict[str, str] = {}
    check_object(path, fmt, res, 0, errors)
    if errors:
        raise format_error(errors)
    return res


# ----------------------------------------------------------------------------------------------
# check_prop / check_object / check_type (JSONSchema.pm)
# ----------------------------------------------------------------------------------------------


def _check_type(path: str, typ: Any, value: Any, errors: dict[str, str]) -> bool:
    if not typ:
        return True
    if isinstance(typ, list):
        for t in typ:
            tmp: dict[str, str] = {}
            _check_type(path, t, value, tmp)
            if not tmp:
                return True
        add_error(errors, path, f"type check ('{'|'.join(typ)}') failed")
        return False
    if isinstance(typ, dict):
        tmp = {}
        _check_prop(value, typ, path, tmp)
        if not tmp:
            return True
        add_error(errors, path, "type check failed")
        return False
    if typ == "any":
        return True
    if typ == "null":
        if value is not None:
            add_error(errors, path, f"type check ('{typ}') failed - value is not null")
            return False
        return True
    vt = perl_ref(value)
    if typ == "array":
        if vt != "ARRAY":
            add_error(errors, path, f"type check ('{typ}') failed")
            return False
        return True
    if typ == "object":
        if vt != "HASH":
            add_error(errors, path, f"type check ('{typ}') failed")
            return False
        return True
    if vt:
        if typ == "boolean" and vt == JSON_BOOL_CLASS:
            return True
        add_error(errors, path, f"type check ('{typ}') failed - got {vt}")
        return False
    text = _scalar(value)
    if typ == "boolean":
        # only '1' and '0': the yes/no/on/off spellings are accepted in property strings and on the
        # command line (parse_boolean), not by the API
        if text in ("1", "0"):
            return True
    elif typ == "integer":
        if IS_INTEGER_RE.match(text):
            return True
    elif typ == "number":
        if is_number(text):
            return True
    else:
        return True  # 'string' and unknown types
    add_error(errors, path, f"type check ('{typ}') failed - got '{text}'")
    return False


def _scalar(value: Any) -> str:
    if isinstance(value, RepeatedValue):
        return "\0".join(value)
    return perl_str(value)


def _check_prop(
    value: Any, schema: Any, path: str, errors: dict[str, str], instance_type: str | None = None
) -> None:
    if not isinstance(schema, dict):
        add_error(errors, path, "Invalid schema definition.")
        return
    optional_for_type = False
    if schema.get("oneOf"):
        if schema.get("type-property"):
            optional_for_type = True
            for inner in schema["oneOf"]:
                if not instance_type:
                    break
                if inner.get("instance-types") is None:
                    add_error(errors, path, "missing 'instance-types' in oneOf alternative")
                    return
                if instance_type not in inner["instance-types"]:
                    continue
                optional_for_type = bool(inner.get("optional"))
                _check_prop(value, inner, path, errors)
        else:
            collected: list[str] = []
            for i, inner in enumerate(schema["oneOf"]):
                inner_errors: dict[str, str] = {}
                _check_prop(value, inner, f"{path}.oneOf[{i}]", inner_errors)
                if not inner_errors:
                    break
                collected.extend(k for k in inner_errors if k not in collected)
            else:
                # JSONSchema.pm copies `$inner_errors->{$path}` (always undef) under each inner path,
                # so PVE reports these paths without text; an empty message here.
                for inner_path in collected:
                    errors.setdefault(inner_path, "")
    elif instance_type:
        if schema.get("instance-types") is None:
            add_error(errors, path, "missing 'instance-types'")
            return
    if schema.get("extends"):
        _check_prop(value, schema["extends"], path, errors)

    if value is None:
        if schema.get("type") == "null":
            return
        if not (schema.get("optional") or schema.get("alias") or schema.get("group") or optional_for_type):
            add_error(errors, path, "property is missing and it is not optional")
        return

    if not _check_type(path, schema.get("type"), value, errors):
        return

    vt = perl_ref(value)
    if vt == "ARRAY":
        items = schema.get("items")
        if isinstance(items, dict):
            for ind, el in enumerate(value):
                _check_prop(el, items, f"{path}[{ind}]", errors)
        return
    if vt == "HASH":
        if schema.get("properties") is not None or schema.get("additionalProperties"):
            check_object(path, schema.get("properties") or {}, value, schema.get("additionalProperties"), errors)
        return
    if vt:  # JSON boolean for a boolean property
        return

    text = _scalar(value)
    fmt = schema.get("format")
    if fmt:
        try:
            check_format(fmt, text, path)
        except Die as exc:
            add_error(errors, path, "invalid format - " + exc.msg)
            return
    pattern = schema.get("pattern")
    if pattern:
        if anchored(pattern).match(text) is None:
            add_error(errors, path, "value does not match the regex pattern")
            return
    max_len = schema.get("maxLength")
    if max_len is not None and len(text) > num(max_len):
        add_error(errors, path, f"value may only be {perl_str(max_len)} characters long")
        return
    min_len = schema.get("minLength")
    if min_len is not None and len(text) < num(min_len):
        add_error(errors, path, f"value must be at least {perl_str(min_len)} characters long")
        return
    if is_number(text):
        maximum = schema.get("maximum")
        if maximum is not None and float(text) > num(maximum):
            add_error(errors, path, f"value must have a maximum value of {perl_str(maximum)}")
            return
        minimum = schema.get("minimum")
        if minimum is not None and float(text) < num(minimum):
            add_error(errors, path, f"value must have a minimum value of {perl_str(minimum)}")
            return
    enum = schema.get("enum")
    if enum:
        if not any(perl_str(ev) == text for ev in enum):
            add_error(
                errors,
                path,
                f"value '{text}' does not have a value in the enumeration '{', '.join(perl_str(e) for e in enum)}'",
            )


def _instance_type(schema: dict[str, Any], key: str, value: dict[str, Any]) -> str | None:
    sub = schema.get(key)
    prop = sub.get("type-property") if isinstance(sub, dict) else None
    if prop:
        it = value.get(prop)
        return None if it is None else _scalar(it)
    return None


def check_object(
    path: str,
    schema: dict[str, Any],
    value: dict[str, Any],
    additional: Any,
    errors: dict[str, str],
    required: Iterable[str] | None = None,
) -> None:
    """JSONSchema.pm::check_object. `required`, when given, lists the only schema keys that can yield
    an error while absent (a precomputed shortcut for the large qemu config schemas)."""
    if not isinstance(value, dict):
        add_error(errors, path, "an object is required")
        return
    keys: Iterable[str]
    if required is None:
        keys = schema.keys()
    else:
        keys = list(value.keys()) + [k for k in required if k not in value]
    for k in keys:
        sub = schema.get(k)
        if sub is None:
            continue
        _check_prop(value.get(k), sub, f"{path}.{k}" if path else k, errors, _instance_type(schema, k, value))
    for k in value:
        newpath = f"{path}.{k}" if path else k
        sub = schema.get(k)
        if sub is not None:
            requires = sub.get("requires")
            if requires:
                if isinstance(requires, dict):
                    _check_prop(value, requires, path, errors)
                elif value.get(requires) is None:
                    add_error(
                        errors,
                        f"{path}.{requires}" if path else requires,
                        f"missing property - '{newpath}' requires this property",
                    )
            matched = True
            if sub.get("oneOf"):
                it = _instance_type(schema, k, value)
                matched = False
                for alt in sub["oneOf"]:
                    its = alt.get("instance-types")
                    if its and it not in its:
                        continue
                    matched = True
                    break
            if matched:
                continue
        if additional is not None and not additional:
            add_error(
                errors, newpath, "property is not defined in schema and the schema does not allow additional properties"
            )
            continue
        if isinstance(additional, dict):
            _check_prop(value[k], additional, newpath, errors)


def coerce(value: Any, typ: Any) -> object:
    if value is None:
        return None
    if isinstance(value, RepeatedValue):
        value = "\0".join(value)
    if typ == "boolean":
        if isinstance(value, bool):
            return int(value)
        return 1 if perl_str(value) == "1" else 0
    if typ == "integer":
        return int(perl_str(value).strip())
    if typ == "number":
        return float(perl_str(value).strip())
    if typ == "string" or typ is None:
        return value if isinstance(value, (dict, list)) else perl_str(value)
    return value


def check_return_value(data: Any, schema: dict[str, Any], path: str, problems: list[str]) -> None:
    typ = schema.get("type")
    if data is None:
        if typ not in (None, "null", "any"):
            problems.append(f"{path}: null where {typ} expected")
        return
    ok = True
    if typ == "object":
        ok = isinstance(data, dict)
    elif typ == "array":
        ok = isinstance(data, list)
    elif typ == "string":
        ok = isinstance(data, str)
    elif typ == "integer":
        ok = isinstance(data, int) and not isinstance(data, bool)
    elif typ == "number":
        ok = isinstance(data, (int, float)) and not isinstance(data, bool)
    elif typ == "boolean":
        ok = isinstance(data, bool) or (isinstance(data, int) and data in (0, 1))
    elif typ == "null":
        ok = data is None
    if not ok:
        problems.append(f"{path}: {type(data).__name__} where {typ} expected")
        return
    enum = schema.get("enum")
    if isinstance(enum, list) and not isinstance(data, (dict, list)) and data not in enum and str(data) not in enum:
        problems.append(f"{path}: {data!r} not one of {enum}")
    if isinstance(data, dict):
        props = schema.get("properties")
        if isinstance(props, dict) and props and schema.get("additionalProperties") in (0, False):
            extra = sorted(set(data) - set(props))
            if extra:
                problems.append(f"{path}: properties the schema does not allow: {extra}")
        if isinstance(props, dict):
            for key, sub in props.items():
                if key not in data or data[key] is None:
                    if isinstance(sub, dict) and not sub.get("optional"):
                        problems.append(f"{path}.{key}: required property missing")
                    continue
                if isinstance(sub, dict):
                    check_return_value(data[key], sub, f"{path}.{key}", problems)
    elif isinstance(data, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, el in enumerate(data):
                check_return_value(el, items, f"{path}[{i}]", problems)
