// ESLint (flat config): typescript-eslint's type-aware recommended rules over src/. Rules turned off
// say why on their line; test/ and bench/ are not linted yet.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'build/', 'node_modules/', 'native/', 'docker/', 'bench/', 'test/', '*.config.*'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    files: ['src/**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // indexed reads are marked `x[i]!` as noUncheckedIndexedAccess would require; without that option each is "unnecessary"
      '@typescript-eslint/no-unnecessary-type-assertion': 'off',
      // async without await is deliberate: implementations of async interfaces, throws become rejections
      '@typescript-eslint/require-await': 'off',
      // promise wrappers (abortable, timeouts, addon calls) pass on the rejection they got, whatever it is
      '@typescript-eslint/prefer-promise-reject-errors': 'off',
      // callbacks are declared as methods but are closures; none relies on `this`
      '@typescript-eslint/unbound-method': 'off',
      // `throw x` after `if (x)` where x is set in a callback: TypeScript narrows x to never there
      '@typescript-eslint/only-throw-error': 'off',
      // `Promise<unknown> | unknown` documents that a hook may be async
      '@typescript-eslint/no-redundant-type-constituents': 'off',
      // String(v) of a value from outside (a config field, a thrown non-Error) is for a message only
      '@typescript-eslint/no-base-to-string': 'off',
      // `interface A extends B {}` names an options type that may grow
      '@typescript-eslint/no-empty-object-type': ['error', { allowInterfaces: 'with-single-extends' }],
      // parameters: ops-table and callback implementations keep their interface's parameter list
      '@typescript-eslint/no-unused-vars': [
        'error',
        { args: 'none', varsIgnorePattern: '^_', caughtErrors: 'none' },
      ],
      // `let x!: T` declared before the closures that use it, assigned once after them, is deliberate
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
    },
  },
);
