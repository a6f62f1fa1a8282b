//! `ignite ps -f`: `<template><op><value>[,...]`, all of which must hold. Operators:
//! `=` and `==` (equal), `!=`, `=~` (contains), `!~` (does not contain).
//! Example: `{{.ObjectMeta.Name}}=my-vm2,{{.Spec.CPUs}}!=3`.

use chrono::{DateTime, Utc};

use crate::template::{Template, TemplateError, TemplateSubject};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Equal,
    NotEqual,
    Contains,
    NotContains,
}

#[derive(Debug, Clone, PartialEq)]
struct Condition {
    key: Template,
    op: Op,
    value: String,
}

/// A compiled `-f` expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    conditions: Vec<Condition>,
}

/// Why a filter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error(
        "invalid filter {0:?}: expected {{{{.Path.To.Field}}}}<op><value> with op one of =, ==, !=, =~, !~ \
         (e.g. {{{{.ObjectMeta.Name}}}}=my-vm); join conditions with ','"
    )]
    Syntax(String),
    #[error(transparent)]
    Template(#[from] TemplateError),
}

impl Filter {
    pub fn compile<T: TemplateSubject>(expression: &str) -> Result<Filter, FilterError> {
        let conditions = expression
            .split(',')
            .map(|part| compile_condition::<T>(part.trim()))
            .collect::<Result<_, _>>()?;
        Ok(Filter { conditions })
    }

    /// Does `object` satisfy every condition?
    pub fn matches<T: TemplateSubject>(&self, object: &T, now: DateTime<Utc>) -> bool {
        self.conditions.iter().all(|c| {
            let actual = c.key.render(object, now);
            match c.op {
                Op::Equal => actual == c.value,
                Op::NotEqual => actual != c.value,
                Op::Contains => actual.contains(&c.value),
                Op::NotContains => !actual.contains(&c.value),
            }
        })
    }
}

fn compile_condition<T: TemplateSubject>(part: &str) -> Result<Condition, FilterError> {
    let bad = || FilterError::Syntax(part.to_string());
    if !part.starts_with("{{") {
        return Err(bad());
    }
    let end = part.find("}}").ok_or_else(bad)? + 2;
    let (key, rest) = part.split_at(end);
    let (op, value) = [
        ("==", Op::Equal),
        ("!=", Op::NotEqual),
        ("=~", Op::Contains),
        ("!~", Op::NotContains),
        ("=", Op::Equal),
    ]
    .into_iter()
    .find_map(|(token, op)| rest.strip_prefix(token).map(|v| (op, v)))
    .ok_or_else(bad)?;
    if value.is_empty() {
        return Err(bad());
    }
    Ok(Condition {
        key: Template::compile::<T>(key)?,
        op,
        value: value.to_string(),
    })
}
