"""The role-expression grammar of golf/rules.py: each operator, precedence, and every error message."""

from __future__ import annotations

import pytest

from golf.config.errors import ConfigError
from golf.model.roles import Role
from golf.rules import (
    ExpressionError,
    check_expression,
    check_rules,
    compile_expression,
    first_match,
    num_layers_of,
    selected,
)

# a 4-block model: embedding and head outside the blocks, one matrix and one control per block
ROLES = {
    "tok_emb.weight": Role("tok_emb.weight", "embedding", "input", None, "none", "core", 2, 1024 * 64),
    "bigram.embed.weight": Role("bigram.embed.weight", "table", "input", None, "none", "bigram", 2, 4096 * 32),
    "lm_head.weight": Role("lm_head.weight", "head", "exit", None, "none", "core", 2, 64 * 1024),
    **{f"blocks.{i}.attn.c_k.weight": Role(f"blocks.{i}.attn.c_k.weight", "matrix", "encoder" if i < 2 else "decoder",
                                           i, "attn", "core", 2, 64 * 32) for i in range(4)},
    **{f"blocks.{i}.mlp.fc.weight": Role(f"blocks.{i}.mlp.fc.weight", "matrix", "encoder" if i < 2 else "decoder",
                                         i, "mlp", "core", 2, 64 * 256) for i in range(4)},
    **{f"blocks.{i}.attn_scale": Role(f"blocks.{i}.attn_scale", "control", "encoder" if i < 2 else "decoder",
                                      i, "residual", "core", 1, 64) for i in range(4)},
}


def sel(expr: str) -> set[str]:
    return selected(expr, ROLES, "test.select")


def ck(*layers: int) -> set[str]:
    return {f"blocks.{i}.attn.c_k.weight" for i in layers}


def fc(*layers: int) -> set[str]:
    return {f"blocks.{i}.mlp.fc.weight" for i in layers}


def scale(*layers: int) -> set[str]:
    return {f"blocks.{i}.attn_scale" for i in layers}


ALL = set(ROLES)


def test_star_and_field_equality_with_value_lists():
    assert sel("*") == ALL
    assert sel("kind=matrix") == ck(0, 1, 2, 3) | fc(0, 1, 2, 3)
    assert sel("kind=embedding,table") == {"tok_emb.weight", "bigram.embed.weight"}
    assert sel("place=decoder & part=mlp") == fc(2, 3)
    assert sel("family=bigram") == {"bigram.embed.weight"}
    assert sel("  kind = head  ") == {"lm_head.weight"}  # whitespace is free


def test_not_equal_is_the_complement():
    assert sel("kind!=matrix") == ALL - sel("kind=matrix")
    assert sel("kind!=matrix,control") == {"tok_emb.weight", "bigram.embed.weight", "lm_head.weight"}


def test_numeric_comparisons():
    assert sel("numel<=2048") == ck(0, 1, 2, 3) | scale(0, 1, 2, 3)
    assert sel("numel<2048") == scale(0, 1, 2, 3)
    assert sel("numel>16384") == {"tok_emb.weight", "bigram.embed.weight", "lm_head.weight"}
    assert sel("numel>=16384") == sel("numel>16384") | fc(0, 1, 2, 3)
    assert sel("ndim=1") == scale(0, 1, 2, 3)
    assert sel("ndim=1,2") == ALL
    # outside the blocks a parameter has no layer: layer comparisons never select it
    assert sel("layer>=2") == ck(2, 3) | fc(2, 3) | scale(2, 3)
    assert sel("layer<1") == ck(0) | fc(0) | scale(0)


def test_layer_selectors_count_in_the_models_layers():
    assert num_layers_of(ROLES) == 4
    assert sel("layer=1,3 & part=attn") == ck(1, 3)
    assert sel("layer=last:1 & kind=matrix") == ck(3) | fc(3)
    assert sel("layer=first:2 & kind=control") == scale(0, 1)
    assert sel("layer=from:3") == ck(3) | fc(3) | scale(3)
    assert sel("layer=last:9 & part=mlp") == fc(0, 1, 2, 3)  # more than there are: all of them
    assert sel("layer=none") == {"tok_emb.weight", "bigram.embed.weight", "lm_head.weight"}
    assert sel("layer!=none & part=mlp") == fc(0, 1, 2, 3)


def test_name_regex_escape_hatch():
    assert sel("name~'c_k'") == ck(0, 1, 2, 3)
    assert sel('name ~ "^blocks\\.[01]\\.mlp"') == fc(0, 1)
    assert sel("layer=last:2 & part=attn & name~'c_k'") == ck(2, 3)  # #295's late-K


def test_not_and_or_precedence_and_parentheses():
    # & binds tighter than |: a | b & c == a | (b & c)
    assert sel("kind=head | kind=matrix & layer=0") == {"lm_head.weight"} | ck(0) | fc(0)
    assert sel("(kind=head | kind=matrix) & layer=0") == ck(0) | fc(0)
    # ! binds tightest: !a & b == (!a) & b
    assert sel("!kind=matrix & place=decoder") == scale(2, 3)
    assert sel("!(kind=matrix & place=decoder)") == ALL - ck(2, 3) - fc(2, 3)
    assert sel("!!kind=head") == {"lm_head.weight"}
    assert sel("kind=control | numel<=2048 | kind=head") == scale(0, 1, 2, 3) | ck(0, 1, 2, 3) | {"lm_head.weight"}
    assert sel("((kind=head))") == {"lm_head.weight"}
    assert sel("!*") == set()


@pytest.mark.parametrize("expr,message", [
    ("", "is empty (use * to select everything)"),
    ("   ", "is empty (use * to select everything)"),
    ("kind=matrix $ x", "cannot read '$ x'"),
    ("name~'('", "name~'(' is not a regular expression (missing ), unterminated subpattern at position 0)"),
    ("colour=red", "unknown field 'colour'; fields: kind, place, part, family, layer, ndim, numel, name~'regex'"),
    ("kind<3", "kind is not numeric; compare it with = or !="),
    ("numel<=big", "numel<=big: 'big' is not an integer"),
    ("kind=matrices", "kind=matrices: unknown kind; one of matrix, embedding, head, table, control"),
    ("layer=last", "layer=last: use an index, last:N, first:N, from:I or none"),
    ("ndim=two", "ndim=two: not integers"),
    ("kind=matrix &", "ends too early"),
    ("kind", "ends too early"),
    ("(kind=matrix", "a '(' is not closed"),
    ("(kind=matrix kind=head)", "a '(' is not closed"),
    (")", "unexpected ')'"),
    ("kind=matrix & | kind=head", "unexpected '|'"),
    ("kind matrix", "kind must be followed by =, !=, <, <=, > or >="),
    ("kind=(", "kind= needs a value"),
    ("layer>=", "layer>= needs a value"),
    ("kind=matrix)", "unexpected ')' after a complete expression"),
    ("kind=matrix kind=head", "unexpected 'kind' after a complete expression"),
])
def test_every_error_message(expr, message):
    with pytest.raises(ExpressionError) as err:
        compile_expression(expr)
    assert str(err.value) == message


def test_a_bad_expression_in_a_table_names_its_key():
    class Rule:
        def __init__(self, select: str, setting: str):
            self.select, self.setting = select, setting

    with pytest.raises(ConfigError) as err:
        check_rules([Rule("*", "a"), Rule("(kind=matrix", "b")], "optimizer.rules")
    assert (err.value.key, err.value.value) == ("optimizer.rules[1].select", "(kind=matrix")
    assert str(err.value) == "optimizer.rules[1].select='(kind=matrix': a '(' is not closed"
    with pytest.raises(ConfigError, match=r"^quant.rules=\[\]: needs at least one rule$"):
        check_rules([], "quant.rules")
    with pytest.raises(ConfigError, match="^quant.prune.select='kind=': kind= needs a value$"):
        check_expression("kind=", "quant.prune.select")


def test_first_match_wins_and_an_unselected_parameter_is_named():
    class Rule:
        def __init__(self, select: str, group: str):
            self.select, self.group = select, group

    rules = [Rule("kind=matrix & place=decoder", "late"), Rule("kind=matrix", "muon"), Rule("kind=head", "head")]
    got = first_match(rules, ROLES, "optimizer.rules", require_all=False)
    assert {n for n, m in got.items() if m.index == 0} == ck(2, 3) | fc(2, 3)
    assert {n for n, m in got.items() if m.rule.group == "muon"} == ck(0, 1) | fc(0, 1)
    assert "tok_emb.weight" not in got  # no rule selects it; left out when not required
    with pytest.raises(ConfigError) as err:
        first_match(rules, ROLES, "optimizer.rules")
    assert err.value.key == "optimizer.rules" and err.value.value == "tok_emb.weight"
    assert str(err.value).endswith("this parameter (kind=embedding place=input part=none family=core ndim=2 "
                                   "numel=65536) is selected by no rule; add a rule that selects it")
