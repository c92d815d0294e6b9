"""Stage 3: Stan code generation. Generators return named blocks (`Blocks`);
`assemble` is the one place that orders and lays out a program."""
from .blocks import BLOCK_ORDER, Blocks, assemble, indent_lines, merge
from .joint import (JointProgram, Structure, joint_inits, joint_program, joint_stan_data,
                    joint_stancode, structure_of)

__all__ = ["BLOCK_ORDER", "Blocks", "JointProgram", "Structure", "assemble", "indent_lines",
           "joint_inits", "joint_program", "joint_stan_data", "joint_stancode", "merge",
           "structure_of"]
