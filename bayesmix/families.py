"""Response families and their link functions, named like R/lme4."""
from __future__ import annotations

from dataclasses import dataclass

from .errors import FamilyError

# family -> valid links; the first one is R's default link.
_LINKS: dict[str, tuple[str, ...]] = {
    "gaussian": ("identity", "log", "inverse"),
    "binomial": ("logit", "probit", "cloglog", "log"),
    "bernoulli": ("logit", "probit", "cloglog", "log"),
    "poisson": ("log", "identity", "sqrt"),
    "negbinomial": ("log", "identity", "sqrt"),
    "Gamma": ("inverse", "log", "identity"),
}

# lower-cased spellings accepted for each family
_ALIASES: dict[str, str] = {
    "gaussian": "gaussian",
    "normal": "gaussian",
    "binomial": "binomial",
    "bernoulli": "bernoulli",
    "poisson": "poisson",
    "negbinomial": "negbinomial",
    "neg_binomial": "negbinomial",
    "negative_binomial": "negbinomial",
    "neg_binomial_2": "negbinomial",
    "nb": "negbinomial",
    "gamma": "Gamma",
}


@dataclass(frozen=True)
class Family:
    name: str
    link: str

    def __str__(self) -> str:
        return f"{self.name}({self.link})"


def get_family(family: str | Family = "gaussian", link: str | None = None) -> Family:
    """Resolve a family name (R spellings, case-insensitive) and link; the
    default link is R's. Raises FamilyError naming the valid choices."""
    if isinstance(family, Family):
        name = family.name
        link = family.link if link is None else link
    elif isinstance(family, str):
        name = _ALIASES.get(family.strip().lower())
        if name is None:
            raise FamilyError(
                f"unknown family {family!r}; choose one of: {', '.join(_LINKS)}"
            )
    else:
        raise FamilyError(
            f"family must be a name or a Family, not {type(family).__name__}; "
            f"choose one of: {', '.join(_LINKS)}"
        )
    links = _LINKS[name]
    if link is None:
        return Family(name, links[0])
    if not isinstance(link, str) or link.strip().lower() not in links:
        raise FamilyError(
            f"link {link!r} is not available for family {name!r}; "
            f"choose one of: {', '.join(links)}"
        )
    return Family(name, link.strip().lower())
